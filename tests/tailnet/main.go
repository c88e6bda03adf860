// Command tsgw-testcontrol is a test control plane for tsgw: tailscale's own
// testcontrol server (the real control protocol, same module and version as
// the tailscaled it serves), a DERP relay and a STUN server on addresses the
// caller chooses, plus an admin HTTP API through which tests and the hosted-API
// fake define Tailscale Services, approve hosts, delete devices and expire keys.
//
// See README.md for exactly what it models and what it does not.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stunserver"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

func main() {
	var (
		controlAddr = flag.String("control", "127.0.0.1:9911", "listen address of the control server (plain HTTP); clients use --login-server=http://ADDR")
		derpAddr    = flag.String("derp", "127.0.0.1:3340", "listen address of the DERP relay (plain HTTP: clients need TS_DEBUG_USE_DERP_HTTP=1)")
		stunAddr    = flag.String("stun", "127.0.0.1:3478", "listen address (UDP) of the STUN server")
		adminAddr   = flag.String("admin", "127.0.0.1:9912", "listen address of the admin JSON API")
		domain      = flag.String("domain", "tailnet.test", "MagicDNS domain: nodes are HOST.DOMAIN, services LABEL.DOMAIN")
		tags        = flag.String("tags", "tag:proxy", "comma-separated tags nodes may request (testcontrol's TagOwners)")
		strictKeys  = flag.Bool("require-known-keys", false, "refuse nodes whose auth key was not added through the admin API")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "tsgw-testcontrol takes only flags")
		os.Exit(2)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if err := run(*controlAddr, *derpAddr, *stunAddr, *adminAddr, *domain, *tags, *strictKeys); err != nil {
		log.Fatal(err)
	}
}

func run(controlAddr, derpAddr, stunAddr, adminAddr, domain, tags string, strictKeys bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	derpMap, err := startDERPAndSTUN(ctx, derpAddr, stunAddr)
	if err != nil {
		return err
	}

	owners := map[string][]string{}
	for _, t := range strings.Split(tags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			owners[t] = nil // any node may claim it (signup ownership is not modeled)
		}
	}
	ctrl := &testcontrol.Server{
		DERPMap:          derpMap,
		ExplicitBaseURL:  "http://" + controlAddr,
		AllNodesSameUser: true,
		AllOnline:        true,
		TagOwners:        owners,
		MagicDNSDomain:   domain,
		Verbose:          true, // its one verbose line is the register request: see logTap
		DNSConfig:        &tailcfg.DNSConfig{Proxied: true, Domains: []string{domain}},
	}
	b := newBox(ctrl, domain)
	b.strictKeys = strictKeys
	b.tagOwners = owners
	log.SetOutput(&logTap{out: os.Stderr, b: b})
	ctrl.HoldMapRequest = b.onMapRequest
	ctrl.MaybeRateLimitRegister = b.maybeRateLimitRegister
	go b.run(ctx)

	errc := make(chan error, 2)
	serve := func(name, addr string, h http.Handler) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errc <- fmt.Errorf("%s: %w", name, err)
			return
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { <-ctx.Done(); srv.Close() }()
		log.Printf("%s listening on %s", name, ln.Addr())
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s: %w", name, err)
		}
	}
	go serve("control", controlAddr, ctrl)
	go serve("admin", adminAddr, b.adminHandler())
	select {
	case <-ctx.Done():
		log.Printf("shutting down")
		return nil
	case err := <-errc:
		return err
	}
}

// startDERPAndSTUN runs a DERP relay over plain HTTP and a STUN server, and
// returns the one-region DERP map that points clients at them.
func startDERPAndSTUN(ctx context.Context, derpAddr, stunAddr string) (*tailcfg.DERPMap, error) {
	host, portStr, err := net.SplitHostPort(derpAddr)
	if err != nil {
		return nil, fmt.Errorf("-derp: %w", err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("-derp: want an IPv4 address, got %q", host)
	}
	derpPort, _ := strconv.Atoi(portStr)

	d := derpserver.New(key.NewNode(), logger.WithPrefix(log.Printf, "derp: "))
	ln, err := net.Listen("tcp", derpAddr)
	if err != nil {
		return nil, fmt.Errorf("derp: %w", err)
	}
	srv := &http.Server{Handler: derpserver.Handler(d), ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close(); d.Close() }()
	go srv.Serve(ln)
	log.Printf("derp listening on %s", ln.Addr())

	stun := stunserver.New(ctx)
	if err := stun.Listen(stunAddr); err != nil {
		return nil, fmt.Errorf("stun: %w", err)
	}
	go stun.Serve()
	stunPort := stun.LocalAddr().(*net.UDPAddr).Port
	log.Printf("stun listening on %s", stun.LocalAddr())

	return &tailcfg.DERPMap{
		Regions: map[int]*tailcfg.DERPRegion{
			1: {
				RegionID:   1,
				RegionCode: "box",
				RegionName: "tsgw test box",
				Nodes: []*tailcfg.DERPNode{{
					Name:             "1a",
					RegionID:         1,
					HostName:         host,
					IPv4:             host,
					IPv6:             "none",
					DERPPort:         derpPort,
					STUNPort:         stunPort,
					STUNTestIP:       host,
					InsecureForTests: true,
				}},
			},
		},
	}, nil
}

// writeJSON answers with v as JSON and the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers with the Tailscale API's error shape: {"message": ...}.
func writeError(w http.ResponseWriter, status int, format string, a ...any) {
	writeJSON(w, status, map[string]string{"message": fmt.Sprintf(format, a...)})
}

// registerPrefix starts the line testcontrol logs (when Verbose) for each
// register request, with the request as indented JSON. testcontrol offers no
// other way to see which auth key a node used, so the box reads it here.
const registerPrefix = "Got tailcfg.RegisterRequest: "

// logTap passes log output through, except register requests: those go to
// the box, and only a summary is printed (the request carries the auth key).
type logTap struct {
	out io.Writer
	b   *box
}

func (t *logTap) Write(p []byte) (int, error) {
	i := bytes.Index(p, []byte(registerPrefix))
	if i < 0 {
		return t.out.Write(p)
	}
	var req tailcfg.RegisterRequest
	if err := json.Unmarshal(p[i+len(registerPrefix):], &req); err != nil {
		fmt.Fprintf(t.out, "%sregister request (unparsed: %v)\n", p[:i], err)
		return len(p), nil
	}
	t.b.onRegister(&req)
	host := ""
	if req.Hostinfo != nil {
		host = req.Hostinfo.Hostname
	}
	fmt.Fprintf(t.out, "%sregister request: node key %s, old node key %s, host %q, auth key given: %v\n",
		p[:i], req.NodeKey.ShortString(), req.OldNodeKey.ShortString(), host,
		req.Auth != nil && req.Auth.AuthKey != "")
	return len(p), nil
}

package main

import (
	"encoding/json"
	"log"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/util/rands"
)

// The admin API: JSON over HTTP, for tests and for the hosted-API fake.
// Every path is listed in README.md. Errors use the Tailscale API's shape,
// {"message": "..."}.
func (b *box) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"ok": true, "controlURL": b.ctrl.BaseURL()})
	})

	mux.HandleFunc("GET /api/services", b.listServices)
	mux.HandleFunc("GET /api/services/{name}", b.getService)
	mux.HandleFunc("PUT /api/services/{name}", b.putService)
	mux.HandleFunc("DELETE /api/services/{name}", b.deleteService)
	mux.HandleFunc("GET /api/services/{name}/hosts", b.serviceHosts)
	mux.HandleFunc("PUT /api/services/{name}/approvals/{node}", b.setApproval)
	mux.HandleFunc("DELETE /api/services/{name}/approvals/{node}", b.setApproval)
	mux.HandleFunc("GET /api/auto-approvers", b.getAutoApprovers)
	mux.HandleFunc("PUT /api/auto-approvers", b.putAutoApprovers)
	mux.HandleFunc("GET /api/policy", b.getPolicy)
	mux.HandleFunc("PUT /api/policy", b.putPolicy)

	mux.HandleFunc("GET /api/nodes", b.listNodes)
	mux.HandleFunc("GET /api/nodes/{node}", b.getNode)
	mux.HandleFunc("DELETE /api/nodes/{node}", b.deleteNode)
	mux.HandleFunc("POST /api/nodes/{node}/expire", b.expireNode)
	mux.HandleFunc("PUT /api/nodes/{node}/tags", b.setNodeTags)

	mux.HandleFunc("GET /api/keys", b.listKeys)
	mux.HandleFunc("POST /api/keys", b.addKey)
	mux.HandleFunc("DELETE /api/keys/{id}", b.revokeKey)

	mux.HandleFunc("GET /api/register-rate-limit", b.getRateLimit)
	mux.HandleFunc("PUT /api/register-rate-limit", b.putRateLimit)
	mux.HandleFunc("DELETE /api/register-rate-limit", b.putRateLimit)
	return mux
}

// serviceJSON is the Tailscale API's VIPService shape.
type serviceJSON struct {
	Name        string            `json:"name"`
	Addrs       []string          `json:"addrs"`
	Comment     string            `json:"comment"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Ports       []string          `json:"ports"`
	Tags        []string          `json:"tags"`
}

func (s *service) json() serviceJSON {
	out := serviceJSON{Name: string(s.Name), Comment: s.Comment, Annotations: s.Annotations,
		Ports: nonNil(s.Ports), Tags: nonNil(s.Tags), Addrs: []string{}}
	for _, a := range s.Addrs {
		out.Addrs = append(out.Addrs, a.String())
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func serviceName(w http.ResponseWriter, r *http.Request) (tailcfg.ServiceName, bool) {
	name := tailcfg.ServiceName(r.PathValue("name"))
	if err := name.Validate(); err != nil {
		writeError(w, 400, "invalid service name %q: %v", name, err)
		return "", false
	}
	return name, true
}

func (b *box) listServices(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	out := []serviceJSON{}
	for _, name := range mapsKeys(b.services) {
		out = append(out, b.services[name].json())
	}
	b.mu.Unlock()
	writeJSON(w, 200, map[string]any{"vipServices": out})
}

func (b *box) getService(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	b.mu.Lock()
	s := b.services[name]
	var out serviceJSON
	if s != nil {
		out = s.json()
	}
	b.mu.Unlock()
	if s == nil {
		writeError(w, 404, "service %q not found", name)
		return
	}
	writeJSON(w, 200, out)
}

// putService creates or updates a service. The VIPs are the control plane's:
// allocated on create and kept; an update may send them back but not change them.
func (b *box) putService(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	var in serviceJSON
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, 400, "bad body: %v", err)
		return
	}
	if in.Name != "" && in.Name != string(name) {
		writeError(w, 400, "body name %q does not match path %q", in.Name, name)
		return
	}
	for _, p := range in.Ports {
		if p == "do-not-validate" {
			continue
		}
		pr, err := tailcfg.ParseProtoPortRanges([]string{p})
		if err != nil || pr[0].Proto != 6 {
			writeError(w, 400, "invalid port %q: only tcp:PORT or tcp:FIRST-LAST", p)
			return
		}
	}
	b.mu.Lock()
	s := b.services[name]
	created := s == nil
	if created {
		s = &service{Name: name, Addrs: b.allocVIPsLocked(), approvals: map[tailcfg.NodeID]bool{}}
	} else if len(in.Addrs) > 0 {
		for _, a := range in.Addrs {
			ip, err := netip.ParseAddr(a)
			if err != nil || !slices.Contains(s.Addrs, ip) {
				b.mu.Unlock()
				writeError(w, 400, "addrs are allocated by the control plane; %q is not one of %v", a, s.Addrs)
				return
			}
		}
	}
	s.Comment, s.Annotations, s.Ports, s.Tags = in.Comment, in.Annotations, in.Ports, in.Tags
	b.services[name] = s
	out := s.json()
	b.mu.Unlock()
	b.poke()
	writeJSON(w, 200, out)
}

func (b *box) deleteService(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	b.mu.Lock()
	_, found := b.services[name]
	delete(b.services, name)
	b.mu.Unlock()
	if !found {
		writeError(w, 404, "service %q not found", name)
		return
	}
	b.poke()
	writeJSON(w, 200, map[string]any{})
}

type hostJSON struct {
	ID          string   `json:"id"`
	NodeID      string   `json:"nodeId"`
	Name        string   `json:"name"`
	Tags        []string `json:"tags"`
	Advertised  bool     `json:"advertised"`  // the host's latest c2n answer lists the service as Active
	Ports       []string `json:"ports"`       // the ports the host serves for it
	Approved    bool     `json:"approved"`    // explicit approval, or autoApprovers by tag
	Explicit    *bool    `json:"explicit"`    // the explicit decision, if any
	ServiceHost bool     `json:"serviceHost"` // receives the service-host capability
	Eligible    bool     `json:"eligible"`    // could carry the VIP now
	Primary     bool     `json:"primary"`     // carries the VIP now
	Online      bool     `json:"online"`
}

func (b *box) serviceHosts(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	live := b.liveNodes()
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.services[name]
	if s == nil {
		writeError(w, 404, "service %q not found", name)
		return
	}
	out := []hostJSON{}
	for _, id := range mapsKeys(live) {
		n, ns := live[id], b.stateLocked(id)
		ports, adv := ns.advertised[name]
		_, hasDecision := s.approvals[id]
		if ns.deleted || (!adv && !hasDecision) {
			continue
		}
		h := hostJSON{ID: strconv.FormatInt(int64(id), 10), NodeID: string(n.StableID), Name: n.Name,
			Tags: nonNil(n.Tags), Advertised: adv, Ports: []string{}, Approved: b.approvedLocked(s, n),
			ServiceHost: b.mayHostLocked(s, n, ns, now), Eligible: b.eligibleLocked(s, n, ns, now),
			Primary: s.primary == id, Online: ns.streams > 0}
		if v, ok := s.approvals[id]; ok {
			h.Explicit = &v
		}
		for _, p := range ports {
			h.Ports = append(h.Ports, p.String())
		}
		out = append(out, h)
	}
	writeJSON(w, 200, map[string]any{"hosts": out})
}

// findNode resolves a path's {node}: the numeric id, the stable nodeId, or the hostname.
func (b *box) findNode(w http.ResponseWriter, r *http.Request) (*tailcfg.Node, bool) {
	ref := r.PathValue("node")
	live := b.liveNodes()
	b.mu.Lock()
	defer b.mu.Unlock()
	var found []*tailcfg.Node
	for _, id := range mapsKeys(live) {
		n := live[id]
		if b.stateLocked(id).deleted {
			continue
		}
		if strconv.FormatInt(int64(n.ID), 10) == ref || string(n.StableID) == ref || n.Hostinfo.Hostname() == ref {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], true
	case 0:
		writeError(w, 404, "node %q not found", ref)
	default:
		writeError(w, 409, "%q names %d nodes; use the id", ref, len(found))
	}
	return nil, false
}

func (b *box) setApproval(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	n, ok := b.findNode(w, r)
	if !ok {
		return
	}
	var in struct {
		Approved bool `json:"approved"`
	}
	if r.Method == "PUT" {
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			writeError(w, 400, "bad body: %v", err)
			return
		}
	}
	b.mu.Lock()
	s := b.services[name]
	if s != nil {
		if r.Method == "PUT" {
			s.approvals[n.ID] = in.Approved
		} else {
			delete(s.approvals, n.ID)
		}
	}
	b.mu.Unlock()
	if s == nil {
		writeError(w, 404, "service %q not found", name)
		return
	}
	b.poke()
	writeJSON(w, 200, map[string]any{})
}

func (b *box) getAutoApprovers(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	writeJSON(w, 200, map[string]any{"services": b.autoApprovers})
}

// putAutoApprovers replaces the policy's autoApprovers.services: {"services": {"svc:web": ["tag:proxy"]}}.
func (b *box) putAutoApprovers(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Services map[tailcfg.ServiceName][]string `json:"services"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, 400, "bad body: %v", err)
		return
	}
	if in.Services == nil {
		in.Services = map[tailcfg.ServiceName][]string{}
	}
	b.mu.Lock()
	b.autoApprovers = in.Services
	b.mu.Unlock()
	b.poke()
	writeJSON(w, 200, map[string]any{"services": in.Services})
}

// policyJSON is the part of the tailnet policy file the box acts on.
type policyJSON struct {
	TagOwners     map[string][]string `json:"tagOwners"`
	AutoApprovers struct {
		Services map[tailcfg.ServiceName][]string `json:"services"`
	} `json:"autoApprovers"`
}

func (b *box) getPolicy(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out policyJSON
	out.TagOwners = b.tagOwners
	out.AutoApprovers.Services = b.autoApprovers
	writeJSON(w, 200, out)
}

// putPolicy replaces the policy's tagOwners and autoApprovers.services, as
// the hosted API's policy file endpoint does for the whole file. tagOwners
// also becomes testcontrol's TagOwners (a single pointer store, as for
// DNSConfig in applyDNS), which judges tags a node requests with
// --advertise-tags.
func (b *box) putPolicy(w http.ResponseWriter, r *http.Request) {
	var in policyJSON
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, 400, "bad body: %v", err)
		return
	}
	owners := map[string][]string{}
	for t, o := range in.TagOwners {
		if !strings.HasPrefix(t, "tag:") {
			writeError(w, 400, "tagOwners: %q is not a tag", t)
			return
		}
		owners[t] = slices.Clone(o)
	}
	services := map[tailcfg.ServiceName][]string{}
	for name, approvers := range in.AutoApprovers.Services {
		if err := name.Validate(); err != nil {
			writeError(w, 400, "autoApprovers.services: %v", err)
			return
		}
		services[name] = slices.Clone(approvers)
	}
	b.mu.Lock()
	b.tagOwners, b.autoApprovers = owners, services
	b.mu.Unlock()
	b.ctrl.TagOwners = owners
	b.poke()
	in.TagOwners, in.AutoApprovers.Services = owners, services
	writeJSON(w, 200, in)
}

// setNodeTags replaces a node's tags, as the hosted API's device tags
// endpoint does (the caller, the hosted-API fake, has checked the caller may
// apply them): {"tags": ["tag:a"]}. Every tag must exist in tagOwners, and a
// node cannot drop all its tags (as on Tailscale: it would need a user).
func (b *box) setNodeTags(w http.ResponseWriter, r *http.Request) {
	n, ok := b.findNode(w, r)
	if !ok {
		return
	}
	var in struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, 400, "bad body: %v", err)
		return
	}
	if len(in.Tags) == 0 {
		writeError(w, 400, "a device's tags cannot all be removed")
		return
	}
	b.mu.Lock()
	for _, t := range in.Tags {
		if _, ok := b.tagOwners[t]; !ok {
			b.mu.Unlock()
			writeError(w, 400, "tag %q is not in the policy's tagOwners", t)
			return
		}
	}
	b.mu.Unlock()
	// Re-read the record just before writing it back: UpdateNode replaces it whole.
	cur := b.ctrl.Node(n.Key)
	if cur == nil {
		writeError(w, 404, "node %q not found", r.PathValue("node"))
		return
	}
	tags := slices.Clone(in.Tags)
	slices.Sort(tags)
	log.Printf("box: node %d retagged through the API: %v -> %v", cur.ID, cur.Tags, tags)
	cur.Tags = tags
	b.ctrl.UpdateNode(cur)
	b.poke()
	b.mu.Lock()
	out := b.nodeJSONLocked(b.ctrl.Node(n.Key), time.Now())
	b.mu.Unlock()
	writeJSON(w, 200, out)
}

type nodeJSON struct {
	ID         string              `json:"id"`
	NodeID     string              `json:"nodeId"`
	Name       string              `json:"name"`
	Hostname   string              `json:"hostname"`
	Addresses  []string            `json:"addresses"`
	Tags       []string            `json:"tags"`
	NodeKey    string              `json:"nodeKey"`
	Online     bool                `json:"online"`
	LastSeen   *time.Time          `json:"lastSeen"`
	KeyExpiry  *time.Time          `json:"keyExpiry"`
	Expired    bool                `json:"expired"`
	Advertised map[string][]string `json:"advertisedServices"`
	AuthKeyID  string              `json:"authKeyId"`
}

func (b *box) nodeJSONLocked(n *tailcfg.Node, now time.Time) nodeJSON {
	ns := b.stateLocked(n.ID)
	out := nodeJSON{ID: strconv.FormatInt(int64(n.ID), 10), NodeID: string(n.StableID), Name: n.Name,
		Hostname: n.Hostinfo.Hostname(), Tags: nonNil(n.Tags), NodeKey: n.Key.String(),
		Online: ns.streams > 0, Expired: keyExpired(n, now), Addresses: []string{},
		Advertised: map[string][]string{}, AuthKeyID: ns.authKeyID}
	for _, a := range n.Addresses {
		out.Addresses = append(out.Addresses, a.Addr().String())
	}
	if !ns.lastSeen.IsZero() {
		t := ns.lastSeen.UTC()
		out.LastSeen = &t
	}
	if !ns.expireAt.IsZero() {
		t := ns.expireAt.UTC()
		out.KeyExpiry = &t
	} else if !n.KeyExpiry.IsZero() {
		t := n.KeyExpiry.UTC()
		out.KeyExpiry = &t
	}
	for svc, ports := range ns.advertised {
		ps := []string{}
		for _, p := range ports {
			ps = append(ps, p.String())
		}
		out.Advertised[string(svc)] = ps
	}
	return out
}

func (b *box) listNodes(w http.ResponseWriter, r *http.Request) {
	live := b.liveNodes()
	now := time.Now()
	b.mu.Lock()
	out := []nodeJSON{}
	for _, id := range mapsKeys(live) {
		if !b.stateLocked(id).deleted {
			out = append(out, b.nodeJSONLocked(live[id], now))
		}
	}
	b.mu.Unlock()
	writeJSON(w, 200, map[string]any{"nodes": out})
}

func (b *box) getNode(w http.ResponseWriter, r *http.Request) {
	n, ok := b.findNode(w, r)
	if !ok {
		return
	}
	b.mu.Lock()
	out := b.nodeJSONLocked(n, time.Now())
	b.mu.Unlock()
	writeJSON(w, 200, out)
}

// deleteNode deletes a device: its key expires now, so tailscaled drops to
// NeedsLogin and peers stop routing to it; it leaves the node list and every
// service it hosted.
func (b *box) deleteNode(w http.ResponseWriter, r *http.Request) {
	n, ok := b.findNode(w, r)
	if !ok {
		return
	}
	b.setKeyExpiry(n, time.Now().Add(-time.Second), true)
	writeJSON(w, 200, map[string]any{})
}

// expireNode sets the node key's expiry: {"keyExpiry": RFC 3339 time}; an
// empty body or a null time means now. A time in the future expires it then.
func (b *box) expireNode(w http.ResponseWriter, r *http.Request) {
	n, ok := b.findNode(w, r)
	if !ok {
		return
	}
	var in struct {
		KeyExpiry *time.Time `json:"keyExpiry"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			writeError(w, 400, "bad body: %v", err)
			return
		}
	}
	at := time.Now().Add(-time.Second)
	if in.KeyExpiry != nil {
		at = *in.KeyExpiry
	}
	b.setKeyExpiry(n, at, false)
	b.mu.Lock()
	defer b.mu.Unlock()
	writeJSON(w, 200, b.nodeJSONLocked(b.ctrl.Node(n.Key), time.Now()))
}

func (b *box) setKeyExpiry(n *tailcfg.Node, at time.Time, deleted bool) {
	now := time.Now()
	b.mu.Lock()
	ns := b.stateLocked(n.ID)
	ns.expiredKey = n.Key
	ns.expireAt = time.Time{}
	if at.After(now) {
		ns.expireAt = at // the run loop marks it expired for everyone then
	}
	if deleted {
		ns.deleted = true
		for _, s := range b.services {
			delete(s.approvals, n.ID)
		}
	}
	b.mu.Unlock()
	if at.After(now) {
		b.writeExpiry(n.Key, at, false) // the node itself sees it coming, on its own clock
	} else {
		b.writeExpiry(n.Key, expiredAt, true)
	}
	b.poke()
}

// writeExpiry stores a key expiry in testcontrol's record of the node.
// testcontrol's UpdateNode replaces the whole record, so it is re-read just
// before: the node's endpoints may have changed meanwhile.
func (b *box) writeExpiry(k key.NodePublic, at time.Time, expired bool) {
	n := b.ctrl.Node(k)
	if n == nil {
		return
	}
	n.KeyExpiry = at
	n.Expired = expired
	b.ctrl.UpdateNode(n)
}

func (b *box) getRateLimit(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	writeJSON(w, 200, b.rl)
}

// putRateLimit: {"rejectNext": N, "always": bool, "retryAfter": "SECONDS"}; DELETE clears.
func (b *box) putRateLimit(w http.ResponseWriter, r *http.Request) {
	var in rateLimit
	if r.Method == "PUT" {
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			writeError(w, 400, "bad body: %v", err)
			return
		}
	}
	b.mu.Lock()
	b.rl.RejectNext, b.rl.Always, b.rl.RetryAfter = in.RejectNext, in.Always, in.RetryAfter
	out := b.rl
	b.mu.Unlock()
	writeJSON(w, 200, out)
}

func (b *box) listKeys(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []*authKey{}
	for _, id := range mapsKeys(b.keys) {
		out = append(out, b.keys[id])
	}
	writeJSON(w, 200, map[string]any{"keys": out})
}

// addKey makes an auth key known to the box: {"id", "key", "tags", "reusable",
// "expires"}, all optional (the box mints id and secret when absent). The
// answer carries the secret as "key", once.
func (b *box) addKey(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ID       string     `json:"id"`
		Key      string     `json:"key"`
		Tags     []string   `json:"tags"`
		Reusable bool       `json:"reusable"`
		Expires  *time.Time `json:"expires"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, 400, "bad body: %v", err)
		return
	}
	if in.ID == "" {
		in.ID = "k" + rands.HexString(10)
	}
	if in.Key == "" {
		in.Key = "tskey-auth-" + in.ID + "-" + rands.HexString(24)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.keys[in.ID]; dup {
		writeError(w, 409, "auth key %q exists", in.ID)
		return
	}
	k := &authKey{ID: in.ID, Secret: in.Key, Tags: nonNil(in.Tags), Reusable: in.Reusable, Expires: in.Expires, Nodes: []tailcfg.NodeID{}}
	b.keys[in.ID] = k
	writeJSON(w, 200, map[string]any{"id": k.ID, "key": k.Secret, "tags": k.Tags, "reusable": k.Reusable, "expires": k.Expires})
}

func (b *box) revokeKey(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.keys[r.PathValue("id")]
	if k == nil {
		writeError(w, 404, "auth key %q not found", r.PathValue("id"))
		return
	}
	k.Revoked = true
	writeJSON(w, 200, map[string]any{})
}

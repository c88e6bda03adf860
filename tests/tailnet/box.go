package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
)

// expiredAt is the key expiry the box writes for a key that has expired.
// testcontrol stamps every map response with a fixed ControlTime (2020-08-03),
// and clients judge their peers' expiry on control's clock, so an expired key
// must carry a date before that one to look expired to every node.
var expiredAt = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// ghostIDBase is where the IDs of superseded node-key entries start (see ghostify).
const ghostIDBase = 1 << 24

// service is one Tailscale Service as the hosted API defines it, plus the
// control plane's own state for it (approvals, current primary host).
type service struct {
	Name        tailcfg.ServiceName
	Addrs       []netip.Addr // [IPv4 VIP, IPv6 VIP], allocated once and kept
	Comment     string
	Annotations map[string]string
	Ports       []string // "tcp:80", "tcp:8000-8010" or "do-not-validate"
	Tags        []string

	approvals map[tailcfg.NodeID]bool // explicit approve/unapprove, overriding autoApprovers
	primary   tailcfg.NodeID          // the host whose AllowedIPs carry the VIPs; 0 when none
}

// nodeState is what the box knows about a node beyond testcontrol's record.
type nodeState struct {
	key          key.NodePublic // node key of the latest map request
	streams      int            // live streaming map polls: >0 means online
	lastSeen     time.Time
	haveReport   bool
	reportedHash string // latest Hostinfo.ServicesHash the node sent
	fetchedHash  string // ServicesHash of the last c2n /vip-services answer
	fetching     bool
	fetchingHash string                                           // reportedHash when the fetch in flight began
	fetchCancel  context.CancelFunc                               // ends the fetch in flight
	fetchGen     int                                              // which fetch is the one in flight
	failedHash   string                                           // reportedHash of the last fetch that failed
	retryAt      time.Time                                        // when that hash may be asked about again
	advertised   map[tailcfg.ServiceName][]tailcfg.ProtoPortRange // services the node hosts (Active), with ports
	deleted      bool
	expiredKey   key.NodePublic // node key in use when an admin set a key expiry
	expireAt     time.Time      // a key expiry set through the admin API, not yet reached
	authKeyID    string         // the auth key the node last registered with, when known
	rejected     string         // why the node's registration was refused, if it was
}

// authKey is an auth key the box knows (minted by the hosted-API fake or a test).
type authKey struct {
	ID       string           `json:"id"`
	Secret   string           `json:"-"`
	Tags     []string         `json:"tags"`
	Reusable bool             `json:"reusable"`
	Expires  *time.Time       `json:"expires"`
	Revoked  bool             `json:"revoked"`
	Uses     int              `json:"uses"`
	Nodes    []tailcfg.NodeID `json:"nodes"`
}

type rateLimit struct {
	RejectNext int    `json:"rejectNext"` // reject this many more register requests
	Always     bool   `json:"always"`     // reject every register request until cleared
	RetryAfter string `json:"retryAfter"` // Retry-After header value sent with a 429
	Attempts   int    `json:"attempts"`   // register requests seen (read-only)
	Rejected   int    `json:"rejected"`   // register requests answered 429 (read-only)
}

type box struct {
	ctrl   *testcontrol.Server
	domain string
	kick   chan struct{}
	ctx    context.Context

	mu            sync.Mutex
	services      map[tailcfg.ServiceName]*service
	nodes         map[tailcfg.NodeID]*nodeState
	autoApprovers map[tailcfg.ServiceName][]string
	tagOwners     map[string][]string // the policy's tagOwners: the tags that exist, and who may apply them
	vipSeq        uint32
	nextGhost     tailcfg.NodeID
	rl            rateLimit
	keys          map[string]*authKey       // by ID
	pendingReg    map[key.NodePublic]string // node key -> auth key secret of its registration
	strictKeys    bool                      // refuse registrations whose key the box does not know

	// What was last pushed into testcontrol; touched only by the run goroutine.
	appliedRoutes map[key.NodePublic]string
	appliedCaps   map[key.NodePublic]string
	appliedDNS    string
}

func newBox(ctrl *testcontrol.Server, domain string) *box {
	return &box{
		ctrl:          ctrl,
		domain:        domain,
		kick:          make(chan struct{}, 1),
		services:      map[tailcfg.ServiceName]*service{},
		nodes:         map[tailcfg.NodeID]*nodeState{},
		autoApprovers: map[tailcfg.ServiceName][]string{},
		tagOwners:     map[string][]string{},
		nextGhost:     ghostIDBase,
		keys:          map[string]*authKey{},
		pendingReg:    map[key.NodePublic]string{},
		appliedRoutes: map[key.NodePublic]string{},
		appliedCaps:   map[key.NodePublic]string{},
	}
}

// poke asks the run loop to reconcile soon.
func (b *box) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run reconciles on every change and every 250 ms (key expiry passing, c2n retries).
func (b *box) run(ctx context.Context) {
	b.ctx = ctx
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		case <-t.C:
		}
		b.reconcile()
	}
}

func (b *box) stateLocked(id tailcfg.NodeID) *nodeState {
	ns := b.nodes[id]
	if ns == nil {
		ns = &nodeState{}
		b.nodes[id] = ns
	}
	return ns
}

// onMapRequest is testcontrol's HoldMapRequest hook: it sees every map
// request before testcontrol handles it, and its returned func runs when a
// streaming poll ends. That is how the box tracks which nodes are online and
// which ServicesHash each one last reported.
func (b *box) onMapRequest(req *tailcfg.MapRequest) func() {
	n := b.ctrl.Node(req.NodeKey)
	if n == nil || n.ID >= ghostIDBase {
		return nil
	}
	b.handleKeyRotation(n)
	b.applyRegistration(n.Key)

	streaming := req.Stream && !req.ReadOnly
	// Like testcontrol (and the real server), take Hostinfo only from
	// non-streaming updates of modern clients; the streaming poll's copy may be stale.
	carriesHostinfo := req.Hostinfo != nil && !req.ReadOnly && !(req.Stream && req.Version >= 68)

	b.mu.Lock()
	ns := b.stateLocked(n.ID)
	ns.key = n.Key
	ns.lastSeen = time.Now()
	if req.Hostinfo != nil && (carriesHostinfo || !ns.haveReport) {
		if h := req.Hostinfo.ServicesHash; !ns.haveReport || h != ns.reportedHash {
			log.Printf("box: node %d (%s) reports ServicesHash %.12q", n.ID, n.Name, h)
		}
		ns.reportedHash = req.Hostinfo.ServicesHash
		ns.haveReport = true
	}
	if streaming {
		ns.streams++
	}
	b.mu.Unlock()
	b.poke()
	if !streaming {
		return nil
	}
	return func() {
		b.mu.Lock()
		ns.streams--
		ns.lastSeen = time.Now()
		b.mu.Unlock()
		b.poke()
	}
}

// handleKeyRotation deals with a node that registered a new node key (after
// its old one expired, or after it was deleted): testcontrol copies the old
// entry, key expiry included, and keeps the old one. The new key is valid, so
// its expiry is cleared; the old entry is turned into a ghost.
func (b *box) handleKeyRotation(n *tailcfg.Node) {
	b.mu.Lock()
	ns := b.stateLocked(n.ID)
	rotated := !ns.key.IsZero() && ns.key != n.Key
	expiredBy := ns.expiredKey
	ns.key = n.Key // claimed here, so concurrent requests of the new key see one rotation
	if rotated {
		ns.deleted = false
		ns.expireAt = time.Time{}
		ns.advertised, ns.fetchedHash, ns.haveReport = nil, "", false
	}
	b.mu.Unlock()
	if !rotated {
		return
	}
	if !n.KeyExpiry.IsZero() && expiredBy != n.Key {
		log.Printf("box: node %d re-registered with a new key; clearing the copied key expiry", n.ID)
		n.KeyExpiry = time.Time{}
		n.Expired = false
		b.ctrl.UpdateNode(n)
	}
	for _, o := range b.ctrl.AllNodes() {
		if o.ID == n.ID && o.Key != n.Key {
			b.ghostify(o)
		}
	}
}

// onRegister sees each register request (testcontrol logs it when Verbose;
// see logTap). Only the auth key is kept, until the node's first map request.
func (b *box) onRegister(req *tailcfg.RegisterRequest) {
	if req.Auth == nil || req.Auth.AuthKey == "" {
		return
	}
	b.mu.Lock()
	b.pendingReg[req.NodeKey] = req.Auth.AuthKey
	b.mu.Unlock()
}

// applyRegistration checks the auth key a node registered with, on its first
// map request: a known, unexpired, unrevoked key (single-use keys once) is
// consumed and gives the node its tags; any other key, when the box requires
// known keys, is refused (the node's key expires at once, so it needs login).
func (b *box) applyRegistration(nk key.NodePublic) {
	now := time.Now()
	b.mu.Lock()
	secret, ok := b.pendingReg[nk]
	if !ok {
		b.mu.Unlock()
		return
	}
	delete(b.pendingReg, nk)
	n := b.ctrl.Node(nk)
	if n == nil {
		b.mu.Unlock()
		return
	}
	var k *authKey
	for _, c := range b.keys {
		if c.Secret == secret {
			k = c
		}
	}
	reason := ""
	switch {
	case k == nil:
		reason = "unknown auth key"
	case k.Revoked:
		reason = "auth key revoked"
	case k.Expires != nil && !now.Before(*k.Expires):
		reason = "auth key expired"
	case !k.Reusable && k.Uses > 0:
		reason = "single-use auth key already used"
	}
	ns := b.stateLocked(n.ID)
	var tags []string
	if reason == "" {
		k.Uses++
		k.Nodes = append(k.Nodes, n.ID)
		ns.authKeyID = k.ID
		tags = k.Tags
	}
	strict := b.strictKeys
	b.mu.Unlock()

	if reason != "" {
		if !strict {
			return // open mode: any key joins, tags come from --advertise-tags
		}
		log.Printf("box: node %d registration refused: %s", n.ID, reason)
		b.mu.Lock()
		ns.rejected = reason
		b.mu.Unlock()
		b.setKeyExpiry(n, now.Add(-time.Second), true)
		return
	}
	if len(tags) > 0 && !slices.Equal(n.Tags, tags) {
		log.Printf("box: node %d gets the tags of its auth key %s: %v", n.ID, k.ID, tags)
		n.Tags = slices.Clone(tags)
		b.ctrl.UpdateNode(n)
	}
}

// ghostify retires a superseded node-key entry that testcontrol cannot
// delete: it gets an ID and name of its own and an expired key, so peers
// hold it as an expired node that contributes no routes.
func (b *box) ghostify(o *tailcfg.Node) {
	b.mu.Lock()
	id := b.nextGhost
	b.nextGhost++
	b.mu.Unlock()
	log.Printf("box: retiring old key %s of node %d as ghost %d", o.Key.ShortString(), o.ID, id)
	o.ID = id
	o.StableID = tailcfg.StableNodeID(fmt.Sprintf("GHOST%08x", int64(id)))
	o.Name = fmt.Sprintf("ghost-%d.%s.", id, b.domain)
	o.KeyExpiry = expiredAt
	o.Expired = true
	// Addresses of its own, so a peer looking a node up by IP finds the live entry.
	g := id - ghostIDBase + 1
	ghostIP := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 127, byte(g >> 8), byte(g)}), 32)
	o.Addresses = []netip.Prefix{ghostIP}
	o.AllowedIPs = []netip.Prefix{ghostIP}
	b.ctrl.UpdateNode(o)
	b.ctrl.SetSubnetRoutes(o.Key, nil)
	b.ctrl.SetNodeCapMap(o.Key, nil)
}

func (b *box) maybeRateLimitRegister() (bool, string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rl.Attempts++
	if b.rl.Always || b.rl.RejectNext > 0 {
		if b.rl.RejectNext > 0 {
			b.rl.RejectNext--
		}
		b.rl.Rejected++
		return true, b.rl.RetryAfter, "rate limited (tsgw-testcontrol)"
	}
	return false, "", ""
}

// liveNodes is testcontrol's node list without ghosts, by ID.
func (b *box) liveNodes() map[tailcfg.NodeID]*tailcfg.Node {
	out := map[tailcfg.NodeID]*tailcfg.Node{}
	for _, n := range b.ctrl.AllNodes() {
		if n.ID < ghostIDBase {
			out[n.ID] = n
		}
	}
	return out
}

func keyExpired(n *tailcfg.Node, now time.Time) bool {
	return n.Expired || (!n.KeyExpiry.IsZero() && !n.KeyExpiry.After(now))
}

// approvedLocked: an explicit decision wins; otherwise autoApprovers by tag.
func (b *box) approvedLocked(s *service, n *tailcfg.Node) bool {
	if v, ok := s.approvals[n.ID]; ok {
		return v
	}
	for _, t := range b.autoApprovers[s.Name] {
		if slices.Contains(n.Tags, t) {
			return true
		}
	}
	return false
}

// mayHostLocked: approved, tagged, neither deleted nor expired.
func (b *box) mayHostLocked(s *service, n *tailcfg.Node, ns *nodeState, now time.Time) bool {
	return len(n.Tags) > 0 && !ns.deleted && !keyExpired(n, now) && b.approvedLocked(s, n)
}

// eligibleLocked: may host, online, advertises the service and serves all its ports.
func (b *box) eligibleLocked(s *service, n *tailcfg.Node, ns *nodeState, now time.Time) bool {
	if !b.mayHostLocked(s, n, ns, now) || ns.streams == 0 {
		return false
	}
	ports, ok := ns.advertised[s.Name]
	return ok && coversPorts(ports, s.Ports)
}

// coversPorts reports whether a host serving have serves every port of want.
func coversPorts(have []tailcfg.ProtoPortRange, want []string) bool {
	if slices.Contains(want, "do-not-validate") {
		return true
	}
	wants, err := tailcfg.ParseProtoPortRanges(want)
	if err != nil {
		return false
	}
	for _, w := range wants {
		ok := slices.ContainsFunc(have, func(h tailcfg.ProtoPortRange) bool {
			return (h.Proto == 0 || h.Proto == w.Proto) && h.Ports.First <= w.Ports.First && w.Ports.Last <= h.Ports.Last
		})
		if !ok {
			return false
		}
	}
	return true
}

// reconcile computes, from the box's state, which node carries which VIP
// route and service-host capability and which DNS records exist, then pushes
// the differences into testcontrol.
func (b *box) reconcile() {
	now := time.Now()
	live := b.liveNodes()

	b.mu.Lock()
	var due []*tailcfg.Node
	for id, ns := range b.nodes {
		if n := live[id]; n != nil && !ns.expireAt.IsZero() && !now.Before(ns.expireAt) && n.Key == ns.expiredKey {
			ns.expireAt = time.Time{}
			due = append(due, n)
		}
	}
	b.mu.Unlock()
	for _, n := range due {
		log.Printf("box: node %d key expiry reached", n.ID)
		b.writeExpiry(n.Key, expiredAt, true)
		live[n.ID] = b.ctrl.Node(n.Key)
	}

	b.mu.Lock()
	// Learn what hosts advertise: a changed ServicesHash means a c2n fetch.
	for id, ns := range b.nodes {
		n := live[id]
		if n == nil || !ns.haveReport || ns.reportedHash == ns.fetchedHash {
			continue
		}
		if ns.fetching && ns.reportedHash == ns.fetchingHash {
			continue
		}
		if ns.fetching {
			// The node reported again since the fetch in flight began: ask again
			// at once. A request sent as a new node replaces its first map stream
			// can be lost, and waiting out its timeout left the node unasked.
			ns.fetchCancel()
			ns.fetchGen++ // the old fetch's answer, if it comes, is dropped
			ns.fetching = false
		}
		if ns.reportedHash == "" { // advertises nothing: no need to ask
			ns.advertised, ns.fetchedHash = nil, ""
			continue
		}
		if ns.streams == 0 || (ns.reportedHash == ns.failedHash && now.Before(ns.retryAt)) {
			continue
		}
		ctx, cancel := context.WithTimeout(cmp.Or(b.ctx, context.Background()), c2nTimeout)
		ns.fetchGen++
		ns.fetching, ns.fetchingHash, ns.fetchCancel = true, ns.reportedHash, cancel
		go b.fetchVIPServices(ctx, ns.fetchGen, id, n.Key)
	}

	routes := map[key.NodePublic][]netip.Prefix{}
	caps := map[key.NodePublic]tailcfg.ServiceIPMappings{}
	var records []tailcfg.DNSRecord
	names := mapsKeys(b.services)
	ids := mapsKeys(live)
	for _, name := range names {
		s := b.services[name]
		var candidates []tailcfg.NodeID
		for _, id := range ids {
			n, ns := live[id], b.stateLocked(id)
			if b.mayHostLocked(s, n, ns, now) {
				if caps[n.Key] == nil {
					caps[n.Key] = tailcfg.ServiceIPMappings{}
				}
				caps[n.Key][s.Name] = s.Addrs
			}
			if b.eligibleLocked(s, n, ns, now) {
				candidates = append(candidates, id)
			}
		}
		// Sticky primary, as for HA subnet routers: keep the current one while
		// it is eligible; otherwise the eligible host with the lowest node ID.
		if !slices.Contains(candidates, s.primary) {
			old := s.primary
			s.primary = 0
			if len(candidates) > 0 {
				s.primary = candidates[0]
			}
			if old != s.primary {
				log.Printf("box: %s primary host %d -> %d (candidates %v)", s.Name, old, s.primary, candidates)
			}
		}
		if s.primary != 0 {
			k := live[s.primary].Key
			for _, a := range s.Addrs {
				routes[k] = append(routes[k], netip.PrefixFrom(a, a.BitLen()))
			}
		}
		label := strings.TrimPrefix(string(s.Name), "svc:")
		fqdn := label + "." + b.domain + "."
		// AAAA first: tailscaled's in-process resolver keeps one address per
		// name, the last one, and IPv4 is what tests and most clients expect.
		records = append(records,
			tailcfg.DNSRecord{Name: fqdn, Type: "", Value: s.Addrs[1].String()},
			tailcfg.DNSRecord{Name: fqdn, Type: "", Value: s.Addrs[0].String()})
	}
	b.mu.Unlock()

	b.applyRoutes(live, routes)
	b.applyCaps(live, caps)
	b.applyDNS(records)
}

func (b *box) applyRoutes(live map[tailcfg.NodeID]*tailcfg.Node, routes map[key.NodePublic][]netip.Prefix) {
	for _, n := range live {
		want := routes[n.Key]
		sig := fmt.Sprint(want)
		if b.appliedRoutes[n.Key] == sig {
			continue
		}
		if _, seen := b.appliedRoutes[n.Key]; !seen && len(want) == 0 {
			b.appliedRoutes[n.Key] = sig
			continue
		}
		b.ctrl.SetSubnetRoutes(n.Key, want)
		b.appliedRoutes[n.Key] = sig
	}
}

func (b *box) applyCaps(live map[tailcfg.NodeID]*tailcfg.Node, caps map[key.NodePublic]tailcfg.ServiceIPMappings) {
	for _, n := range live {
		m := caps[n.Key]
		var capMap tailcfg.NodeCapMap
		sig := ""
		if len(m) > 0 {
			raw, err := json.Marshal(m)
			if err != nil {
				log.Printf("box: %v", err)
				continue
			}
			sig = string(raw)
			capMap = tailcfg.NodeCapMap{tailcfg.NodeAttrServiceHost: {tailcfg.RawMessage(raw)}}
		}
		if old, seen := b.appliedCaps[n.Key]; (seen && old == sig) || (!seen && sig == "") {
			b.appliedCaps[n.Key] = sig
			continue
		}
		b.ctrl.SetNodeCapMap(n.Key, capMap)
		b.appliedCaps[n.Key] = sig
	}
}

// applyDNS replaces the DNS config's extra records. testcontrol can only
// append records, so the box installs a fresh DNSConfig (a single pointer
// store, read by testcontrol under its lock) and then calls AddDNSRecords with
// nothing, which pushes the new config to every node.
func (b *box) applyDNS(records []tailcfg.DNSRecord) {
	raw, _ := json.Marshal(records)
	if string(raw) == b.appliedDNS {
		return
	}
	b.ctrl.DNSConfig = &tailcfg.DNSConfig{Proxied: true, Domains: []string{b.domain}, ExtraRecords: records}
	b.ctrl.AddDNSRecords()
	b.appliedDNS = string(raw)
}

// c2nTimeout bounds one c2n /vip-services request. The answer takes milliseconds
// here; a request sent while a node is replacing its map stream (a new node, right
// after its first map: 3 of 20 benchmark samples) can be lost. A newer report asks
// again at once; without one, the timeout is what the node waits before it is asked
// again (it was 10 s).
const c2nTimeout = 3 * time.Second

// fetchVIPServices asks a node, over c2n, which services it hosts: what the
// real control plane does when a node's Hostinfo.ServicesHash changes. ctx
// bounds the request; gen says whether this is still the fetch in flight when
// it ends (a newer report may have replaced it).
func (b *box) fetchVIPServices(ctx context.Context, gen int, id tailcfg.NodeID, k key.NodePublic) {
	var res tailcfg.C2NVIPServicesResponse
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://unused/vip-services", nil)
		if err != nil {
			return err
		}
		resp, err := b.ctrl.NodeRoundTripper(k).RoundTrip(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("c2n /vip-services: %s", resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(&res)
	}()

	b.mu.Lock()
	ns := b.stateLocked(id)
	if ns.fetchGen != gen { // replaced by a fetch for a newer report: that one decides
		b.mu.Unlock()
		return
	}
	ns.fetchCancel()
	ns.fetching = false
	if err != nil {
		log.Printf("box: node %d: c2n GET /vip-services: %v (will retry)", id, err)
		ns.failedHash, ns.retryAt = ns.fetchingHash, time.Now().Add(time.Second)
	} else {
		ns.advertised = map[tailcfg.ServiceName][]tailcfg.ProtoPortRange{}
		var summary []string
		for _, v := range res.VIPServices {
			if v != nil && v.Active {
				ns.advertised[v.Name] = v.Ports
				summary = append(summary, fmt.Sprintf("%s%v", v.Name, v.Ports))
			}
		}
		ns.fetchedHash = res.ServicesHash
		log.Printf("box: node %d advertises %v (hash %.12q)", id, summary, res.ServicesHash)
	}
	b.mu.Unlock()
	b.poke()
}

// allocVIPsLocked hands out the next VIP pair: IPv4 from 100.80.0.0/16 (inside
// the CGNAT range clients route single addresses from, away from node
// addresses, which testcontrol takes from 100.64.0.0/16), IPv6 in Tailscale's ULA range.
func (b *box) allocVIPsLocked() []netip.Addr {
	b.vipSeq++
	n := b.vipSeq
	v4 := netip.AddrFrom4([4]byte{100, 80, byte(n >> 8), byte(n)})
	v6 := netip.AddrFrom16([16]byte{0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 14: byte(n >> 8), 15: byte(n)})
	return []netip.Addr{v4, v6}
}

func mapsKeys[K cmp.Ordered, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

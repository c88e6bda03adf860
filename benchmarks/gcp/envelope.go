package gcp

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Envelope is what the load client reads of every DiscoveryResponse: the fields it needs to
// ACK and to count, without decoding a single resource.
type Envelope struct {
	VersionInfo string
	TypeURL     string
	Nonce       string
	Resources   int
}

// DiscoveryResponse field numbers (envoy/service/discovery/v3/discovery.proto).
const (
	fieldVersionInfo = 1 // string
	fieldResources   = 2 // repeated google.protobuf.Any
	fieldTypeURL     = 4 // string
	fieldNonce       = 5 // string
)

// ScanEnvelope walks the top-level fields of a serialised DiscoveryResponse with protowire:
// the version, type and nonce strings are copied, each resource is counted and skipped.
// Unknown fields are skipped; a malformed message is an error.
func ScanEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, fmt.Errorf("tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldVersionInfo || num == fieldTypeURL || num == fieldNonce || num == fieldResources) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return e, fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
			}
			switch num {
			case fieldVersionInfo:
				e.VersionInfo = string(v)
			case fieldTypeURL:
				e.TypeURL = string(v)
			case fieldNonce:
				e.Nonce = string(v)
			case fieldResources:
				e.Resources++
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return e, fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	if e.TypeURL == "" {
		return e, errors.New("no type_url")
	}
	return e, nil
}

package clicktocall

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Authentication modes, as Movidesk offers them.
const (
	AuthBasic = "basic" // "Username and password"
	AuthToken = "token" // "Token"
	AuthNone  = "none"  // "None": only with an allow-list of networks
)

// Auth is who may place calls.
type Auth struct {
	Mode     string
	Username string
	Password string
	Token    string
	// TokenHeader or TokenQuery says where the token is carried: a header
	// (its value, or "Bearer " and the value) or a query parameter. One of
	// the two.
	TokenHeader string
	TokenQuery  string
	// Allow, when not empty, are the only networks requests may come from,
	// whatever the mode.
	Allow []netip.Prefix
	// TrustedProxies are the reverse proxies in front of the endpoint: a
	// request from one of them comes from the address its
	// X-Forwarded-For names (the right-most one not itself a trusted
	// proxy), for Allow, the failed-login backoff and the log.
	TrustedProxies []netip.Prefix
}

// MinSecretLength is the shortest password or token taken: the endpoint
// faces the internet, and a short secret is guessed.
const MinSecretLength = 16

// Check refuses an Auth that would let anyone in or that cannot work,
// with a *FieldError naming the field at fault.
func (a Auth) Check() error {
	switch a.Mode {
	case AuthBasic:
		if a.Username == "" {
			return &FieldError{"Username", errNoBasic}
		}
		if a.Password == "" {
			return &FieldError{"Password", errNoBasic}
		}
		if len(a.Password) < MinSecretLength {
			return &FieldError{"Password", &SecretError{Which: "password", Length: len(a.Password)}}
		}
	case AuthToken:
		if a.Token == "" {
			return &FieldError{"Token", errors.New("token authentication needs a token")}
		}
		if len(a.Token) < MinSecretLength {
			return &FieldError{"Token", &SecretError{Which: "token", Length: len(a.Token)}}
		}
		if (a.TokenHeader == "") == (a.TokenQuery == "") {
			return &FieldError{"TokenHeader", errors.New("token authentication needs the token's place: a header or a query parameter, one of the two")}
		}
	case AuthNone:
		if len(a.Allow) == 0 {
			return &FieldError{"Allow", errors.New(`"none" needs an allow-list of networks: the endpoint places calls`)}
		}
		if len(a.TrustedProxies) > 0 {
			// The address would come from a header: a proxy that passes
			// the client's own X-Forwarded-For on would let anyone in.
			return &FieldError{"TrustedProxies", errors.New(`"none" behind trusted proxies: filter Movidesk's addresses in the proxy, allow only the proxy here, and list no trusted proxy`)}
		}
		if all := coversEverything(a.Allow); all != "" {
			return &FieldError{"Allow", fmt.Errorf(`"none" with an allow-list that lets every %s address in: anyone could place calls; list Movidesk's addresses, or use basic or token`, all)}
		}
	default:
		return &FieldError{"Mode", fmt.Errorf("unknown authentication %q (basic, token or none)", a.Mode)}
	}
	return nil
}

var errNoBasic = errors.New("basic authentication needs a username and a password")

// FieldError is an Auth refused, with the field of Auth at fault as data
// (Mode, Username, Password, Token, TokenHeader, Allow or TrustedProxies):
// the service says where that is set. Its text is Err's alone.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// SecretError is a password or token too short to face the internet.
type SecretError struct {
	Which  string // password or token
	Length int
}

func (e *SecretError) Error() string {
	return fmt.Sprintf("the %s has %d characters, fewer than %d: make a long random one, e.g. openssl rand -hex 16", e.Which, e.Length, MinSecretLength)
}

// coversEverything says which address family ("IPv4", "IPv6") the
// prefixes cover whole, if one: 0.0.0.0/0, or halves that add up to it.
func coversEverything(ps []netip.Prefix) string {
	for _, fam := range []struct {
		name string
		bits int
		is4  bool
	}{{"IPv4", 32, true}, {"IPv6", 128, false}} {
		var list []netip.Prefix
		for _, p := range ps {
			if p.Addr().Is4() == fam.is4 {
				list = append(list, p.Masked())
			}
		}
		// Prefixes are nested or disjoint: the size of the union is the
		// sum of those no other one contains.
		sum := new(big.Int)
		for i, p := range list {
			inner := false
			for j, q := range list {
				if i != j && q.Bits() <= p.Bits() && q.Contains(p.Addr()) && (q.Bits() < p.Bits() || j < i) {
					inner = true
					break
				}
			}
			if !inner {
				sum.Add(sum, new(big.Int).Lsh(big.NewInt(1), uint(fam.bits-p.Bits())))
			}
		}
		if sum.Cmp(new(big.Int).Lsh(big.NewInt(1), uint(fam.bits))) >= 0 {
			return fam.name
		}
	}
	return ""
}

// refusal is why a request is turned away: its HTTP status and the text
// Movidesk shows, with the result for the log and the metrics.
type refusal struct {
	status int
	result string
	msg    string
	after  time.Duration // for a limit: when to try again
	detail string        // for the log alone: what Movidesk must not see
}

func (r *refusal) Error() string { return r.msg }

func refuse(status int, result, format string, args ...any) *refusal {
	return &refusal{status: status, result: result, msg: fmt.Sprintf(format, args...)}
}

// peerAddr is the request's peer address.
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// Client is who sent r: its peer, or behind one of TrustedProxies the
// client the proxy names. Whatever else shares the listener sees its
// clients as the endpoint does.
func (a Auth) Client(r *http.Request) netip.Addr {
	addr, _ := a.client(r)
	return addr
}

// client is who sent the request: its peer, or behind a trusted proxy
// the right-most X-Forwarded-For address that is not a trusted proxy
// (what a client writes there itself is left of what its proxy appends).
func (a Auth) client(r *http.Request) (addr, proxy netip.Addr) {
	peer := peerAddr(r)
	if !contains(a.TrustedProxies, peer) {
		return peer, netip.Addr{}
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	addr = peer
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := parseHop(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a proxy writes addresses: what is left of this is no hop
		}
		addr = h.Unmap()
		if !contains(a.TrustedProxies, addr) {
			break
		}
	}
	return addr, peer
}

// parseHop reads an X-Forwarded-For address, with the port some load
// balancers add ("198.51.100.9:5678", "[2001:db8::1]:443").
func parseHop(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	ap, err := netip.ParseAddrPort(s)
	return ap.Addr(), err
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// unmapped are ps with IPv4-mapped IPv6 prefixes (::ffff:10.0.0.0/104)
// written as IPv4 ones: addresses are compared unmapped, so the mapped
// form would never match.
func unmapped(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out[i] = p.Masked()
	}
	return out
}

// authenticate returns who asks (a username, "token" or "none"), or why
// not. Secrets are compared in constant time, through their digests so
// that their length does not show either.
func (a Auth) authenticate(r *http.Request, addr netip.Addr) (string, *refusal) {
	if len(a.Allow) > 0 && !contains(a.Allow, addr) {
		return "", refuse(http.StatusForbidden, "refused_network", "address %s may not place calls", addr)
	}
	switch a.Mode {
	case AuthNone:
		return "none", nil
	case AuthBasic:
		u, p, ok := r.BasicAuth()
		// Both compared, always: which one is wrong does not show in the
		// time taken.
		uok := same(u, a.Username)
		pok := same(p, a.Password)
		if !ok || !uok || !pok {
			return "", refuse(http.StatusUnauthorized, "refused_auth", "wrong username or password")
		}
		return u, nil
	case AuthToken:
		var got string
		if a.TokenHeader != "" {
			got = r.Header.Get(a.TokenHeader)
			if len(got) > 7 && strings.EqualFold(got[:7], "bearer ") {
				got = got[7:]
			}
		} else {
			got = r.URL.Query().Get(a.TokenQuery)
		}
		if got == "" || !same(got, a.Token) {
			return "", refuse(http.StatusUnauthorized, "refused_auth", "wrong or missing token")
		}
		return "token", nil
	}
	return "", refuse(http.StatusUnauthorized, "refused_auth", "not authorised")
}

func same(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

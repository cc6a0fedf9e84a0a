package main

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/movidesk-agi/movidesk-agi/clicktocall"
)

// ClickToCallSample says what the endpoint would ask Asterisk for a
// sample source of click_to_call.sources, so that an administrator sees
// the dial string and caller id before Movidesk sends a real one; "" when
// the endpoint is off (the configuration is validated).
func (c *Config) ClickToCallSample() string {
	cc := c.ClickToCall
	if cc.Listen == "" {
		return ""
	}
	local := c.clickToCallThroughDialplan()
	source := ""
	for _, s := range cc.Sources {
		p, err := clicktocall.ParsePattern(s)
		if err != nil {
			continue
		}
		if ex := p.Example(); ex != "" && clicktocall.CheckSource(ex, local) == nil {
			source = ex
			break
		}
	}
	if source == "" {
		return "click-to-call: no source of click_to_call.sources can be placed (each is an emergency or service number)"
	}
	data := clicktocall.Data{Source: source, Destination: "11987654321"}
	dial, _ := c2cTemplate("dial", cc.Dial)
	cid, _ := c2cTemplate("caller_id", cc.CallerID)
	var d, id strings.Builder
	dial.Execute(&d, data)
	cid.Execute(&id, data)
	return fmt.Sprintf("click-to-call: source %s to %s rings %s with caller id %q; once answered, the call runs extension %s of context %s",
		source, data.Destination, d.String(), id.String(), data.Destination, cc.Context)
}

// ClickToCallWarnings names what in [click_to_call] is wider than it
// should be, for check-config and the start's log.
func (c *Config) ClickToCallWarnings() []string {
	cc := c.ClickToCall
	if cc.Listen == "" {
		return nil
	}
	var out []string
	local := c.clickToCallThroughDialplan()
	if local {
		out = append(out, fmt.Sprintf("click_to_call.dial %q goes through the dialplan: a source that is no extension there reaches the outbound routes and dials out as the agent (emergency and service numbers are refused, but not the rest); keep click_to_call.sources to your extensions (e.g. [\"_52XX\"]), now %q", cc.Dial, cc.Sources))
	}
	for i, s := range cc.Sources {
		// A literal source the endpoint would refuse every time.
		if !strings.HasPrefix(s, "_") {
			if err := clicktocall.CheckSource(s, local); err != nil {
				out = append(out, fmt.Sprintf("click_to_call.sources[%d] %q is refused every time: %v", i, s, err))
			}
		}
	}
	if len(cc.TrustedProxies) == 0 && cc.PublicURL != "" {
		// The set-up of docs/click-to-call.md: a proxy on the PBX, listen on loopback.
		u, uerr := url.Parse(cc.PublicURL)
		host, _, herr := net.SplitHostPort(cc.Listen)
		a, aerr := netip.ParseAddr(host)
		if uerr == nil && herr == nil && aerr == nil && a.IsLoopback() && !loopbackHost(u.Hostname()) {
			out = append(out, fmt.Sprintf("click_to_call.listen %q is on loopback behind %s: list the proxy in click_to_call.trusted_proxies (e.g. [\"127.0.0.1\"]), or every request seems to come from it, and one password guesser locks everyone out", cc.Listen, cc.PublicURL))
		}
	}
	for i, s := range cc.Destinations {
		if p, err := clicktocall.ParsePattern(s); err == nil {
			if got := p.TollFraudAdmitted(); len(got) > 0 {
				out = append(out, fmt.Sprintf("click_to_call.destinations[%d] %q admits premium-rate, Caribbean or satellite numbers (%s), what toll fraud calls: list the area codes your agents call instead", i, s, strings.Join(got, ", ")))
			}
		}
	}
	if host, _, err := net.SplitHostPort(cc.Listen); err == nil && cc.TLSCertFile == "" {
		if a, err := netip.ParseAddr(host); host == "" || (err == nil && !a.IsLoopback()) {
			out = append(out, fmt.Sprintf("click_to_call.listen %q takes plain HTTP from the network: the password or token crosses it in clear; set tls_cert_file and tls_key_file, or listen on 127.0.0.1 behind a TLS reverse proxy", cc.Listen))
		}
	}
	return out
}

// clickToCallThroughDialplan is whether click_to_call.dial goes through
// the dialplan, decided as the endpoint decides it (the configuration is
// validated).
func (c *Config) clickToCallThroughDialplan() bool {
	dial, err := c2cTemplate("dial", c.ClickToCall.Dial)
	if err != nil {
		return false
	}
	local, _ := clicktocall.ThroughDialplan(dial)
	return local
}

func loopbackHost(h string) bool {
	a, err := netip.ParseAddr(h)
	return h == "localhost" || (err == nil && a.IsLoopback())
}

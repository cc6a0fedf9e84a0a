package doctor

import (
	"context"
	"net"
	"net/url"
	"strings"
	"time"
)

// CheckAGIGlobal checks the MOVIDESK_AGI global, the address every AGI()
// of the examples uses: set, an agi:// URL, and something accepts
// connections there (from this host, which is Asterisk's). hagi:// (SRV)
// is not resolved. listen is server.listen, for the fix.
func CheckAGIGlobal(ctx context.Context, a Asterisk, listen string, timeout time.Duration) Result {
	const check = "the MOVIDESK_AGI global points at movidesk-agi"
	fix := "set `MOVIDESK_AGI=agi://" + listen + "` (server.listen) in [globals] of /etc/asterisk/extensions.conf (FreePBX: globals_custom.conf), then `asterisk -rx 'dialplan reload'`"
	g, err := Globals(ctx, a)
	if err != nil {
		return skipped(check, err)
	}
	v, found := g["MOVIDESK_AGI"]
	if !found || v == "" {
		return fail(check, "MOVIDESK_AGI is not set: every AGI() of the examples fails", fix)
	}
	u, err := url.Parse(v)
	switch {
	case err == nil && u.Scheme == "hagi":
		return ok(check, v+" (SRV records, not checked)")
	case err != nil || u.Scheme != "agi" || u.Host == "":
		return fail(check, "MOVIDESK_AGI="+v+" is not an agi://HOST[:PORT] URL", fix)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(strings.Trim(u.Host, "[]"), "4573") // res_agi's default
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(check, "MOVIDESK_AGI="+v+": "+err.Error(), fix)
	}
	c.Close()
	return ok(check, v)
}

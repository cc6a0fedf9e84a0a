package doctor

import (
	"context"
	"errors"
	"net/http"

	"github.com/movidesk-agi/movidesk-agi/ari"
)

// CheckARI checks that ARI takes click-to-call's credentials: an
// authenticated GET of /ari/asterisk/info, as the service makes before it
// originates. The password goes in the request's header only: no line
// shows it.
func CheckARI(ctx context.Context, rawURL, user, password string) Result {
	check := "ARI takes click_to_call's user " + user
	c, err := ari.NewClient(rawURL, user, password)
	if err != nil {
		return fail(check, err.Error(), "set click_to_call.ari_url to Asterisk's HTTP server and ARI, e.g. http://127.0.0.1:8088/ari")
	}
	check = "ARI at " + c.URL() + " takes click_to_call's user " + user
	err = c.Ping(ctx)
	var ae *ari.Error
	switch {
	case err == nil:
		return ok(check, "")
	case errors.As(err, &ae) && ae.StatusCode == http.StatusUnauthorized:
		return fail(check, "HTTP 401: Asterisk refused the user or its password",
			"in /etc/asterisk/ari.conf, a section ["+user+"] with `type = user` and `password =` the password of click_to_call.ari_password (or ari_password_file), then `asterisk -rx 'module reload res_ari.so'`")
	case errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound:
		return fail(check, "HTTP 404: ARI is off, or not at this path",
			"in /etc/asterisk/ari.conf [general] set `enabled = yes` (with res_ari.so loaded), then `asterisk -rx 'module reload res_ari.so'`; click_to_call.ari_url ends in /ari")
	case errors.As(err, &ae):
		return fail(check, err.Error(), "see Asterisk's log (/var/log/asterisk/messages) for why ARI refused the request")
	}
	return fail(check, err.Error(),
		"Asterisk's HTTP server: in /etc/asterisk/http.conf [general] set `enabled = yes`, and `bindaddr` and `bindport` as click_to_call.ari_url says, then `asterisk -rx 'module reload http'`")
}

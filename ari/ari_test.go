package ari

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestOriginateSendsWhatARITakes(t *testing.T) {
	var got *http.Request
	var body map[string]map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c2c-1.ab","name":"PJSIP/5252-00000001","state":"Down","caller":{"number":"5252"}}`)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, "movidesk", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.Originate(context.Background(), Originate{
		Endpoint: "PJSIP/5252", Context: "out", Extension: "11987654321", CallerID: "5252",
		Timeout: 1500 * time.Millisecond, ChannelID: "c2c-1.ab", Variables: map[string]string{"__X": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ch.ID != "c2c-1.ab" || ch.Name != "PJSIP/5252-00000001" || ch.Caller.Number != "5252" {
		t.Errorf("channel %+v", ch)
	}
	if got.Method != "POST" || got.URL.Path != "/ari/channels" {
		t.Errorf("%s %s, want POST /ari/channels", got.Method, got.URL.Path)
	}
	q := got.URL.Query()
	want := map[string]string{"endpoint": "PJSIP/5252", "context": "out", "extension": "11987654321", "priority": "1",
		"callerId": "5252", "timeout": "2", "channelId": "c2c-1.ab"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s=%q, want %q (query %s)", k, q.Get(k), v, got.URL.RawQuery)
		}
	}
	if q.Has("otherChannelId") {
		t.Errorf("otherChannelId sent empty: %s", got.URL.RawQuery)
	}
	if u, p, ok := got.BasicAuth(); !ok || u != "movidesk" || p != "s3cret" {
		t.Errorf("basic auth %q %q %v", u, p, ok)
	}
	if body["variables"]["__X"] != "1" {
		t.Errorf("variables %v", body)
	}
}

func TestErrorsCarryStatusAndBoundedBodyNeverCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ari/channels/gone" {
			w.WriteHeader(404)
			io.WriteString(w, `{"message":"Channel not found"}`)
			return
		}
		w.WriteHeader(500)
		io.WriteString(w, `{"message":"Allocation failed `+strings.Repeat("x", 2000)+`"}`)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL+"/ari", "movidesk", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Channel(context.Background(), "gone")
	if !IsNotFound(err) || err.Error() != "ari GET /channels/gone: HTTP 404: Channel not found" {
		t.Errorf("got %v", err)
	}
	if err := c.Hangup(context.Background(), "gone", ""); err != nil {
		t.Errorf("hanging up a channel already gone: %v", err)
	}
	_, err = c.Originate(context.Background(), Originate{Endpoint: "PJSIP/5252"})
	e, ok := err.(*Error)
	if !ok || e.StatusCode != 500 || len(e.Body) != maxErrorBody {
		t.Fatalf("got %#v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error holds the password: %v", err)
	}
}

func TestUnreachableNamesThePathNotTheCredentials(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := NewClient(url, "movidesk", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Ping(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "ari GET /asterisk/info: ") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("got %v", err)
	}
}

func TestNewClientRefusesCredentialsInTheURL(t *testing.T) {
	_, err := NewClient("http://movidesk:s3cret@127.0.0.1:8088/ari", "movidesk", "s3cret")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("got %v", err)
	}
	for _, bad := range []string{"", "127.0.0.1:8088", "ftp://x/ari"} {
		if _, err := NewClient(bad, "u", "p"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := NewClient("http://127.0.0.1:8088", "", "p"); err == nil {
		t.Error("no username accepted")
	}
	c, err := NewClient("http://127.0.0.1:8088", "u", "p")
	if err != nil || c.URL() != "http://127.0.0.1:8088/ari" {
		t.Errorf("%v %v", c, err)
	}
}

func TestTimeoutBoundsARequest(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	c, _ := NewClient(srv.URL, "u", "p")
	c.SetTimeout(100 * time.Millisecond)
	start := time.Now()
	_, err := c.Channels(context.Background())
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("got %v after %v", err, time.Since(start))
	}
}

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// movideskServer stands in for Movidesk's telephony API when the route is
// measured end to end: it answers every request 200, at once or after
// latency, over keep-alive connections, and counts them. It checks
// nothing: movidesk/movidesktest is the fake that asserts requests.
type movideskServer struct {
	ln       net.Listener
	srv      *http.Server
	requests atomic.Int64
}

func startMovidesk(addr string, latency time.Duration) (*movideskServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("movidesk: %w", err)
	}
	m := &movideskServer{ln: ln}
	m.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-r.Context().Done():
				return
			}
		}
		m.requests.Add(1)
		w.WriteHeader(http.StatusOK)
	})}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("movidesk: serve:", err)
		}
	}()
	return m, nil
}

// Addr is the base URL to give movidesk.base_url.
func (m *movideskServer) Addr() string { return "http://" + m.ln.Addr().String() + "/public/v1" }

func (m *movideskServer) Close() error {
	fmt.Printf("movidesk: %d requests answered\n", m.requests.Load())
	return m.srv.Close()
}

package agi

import "sync"

// ServeMux routes sessions by script name: agi_network_script before any '?'
// ("transfer" for agi://host/transfer?x=1). Names match exactly.
type ServeMux struct {
	// NotFound serves sessions whose script is not registered. When nil, a
	// warning naming the script and the channel is logged and the session is
	// closed, so Asterisk goes on with the dialplan.
	NotFound Handler

	mu sync.RWMutex
	m  map[string]Handler
}

// NewServeMux returns an empty mux.
func NewServeMux() *ServeMux { return &ServeMux{m: make(map[string]Handler)} }

// Handle registers h for script. It panics if h is nil or script is already
// registered: both are programming errors found at start.
func (mux *ServeMux) Handle(script string, h Handler) {
	if h == nil {
		panic("agi: nil handler for script " + script)
	}
	mux.mu.Lock()
	defer mux.mu.Unlock()
	if mux.m == nil {
		mux.m = make(map[string]Handler)
	}
	if _, dup := mux.m[script]; dup {
		panic("agi: script " + script + " registered twice")
	}
	mux.m[script] = h
}

// HandleFunc registers f for script.
func (mux *ServeMux) HandleFunc(script string, f func(*Session)) {
	mux.Handle(script, HandlerFunc(f))
}

// Handler returns the handler registered for script, nil if none.
func (mux *ServeMux) Handler(script string) Handler {
	mux.mu.RLock()
	defer mux.mu.RUnlock()
	return mux.m[script]
}

// ServeAGI dispatches s to the handler of its script.
func (mux *ServeMux) ServeAGI(s *Session) {
	if h := mux.Handler(s.Script()); h != nil {
		h.ServeAGI(s)
		return
	}
	if mux.NotFound != nil {
		mux.NotFound.ServeAGI(s)
		return
	}
	s.Log().Warn().Str("request", s.Env().Request()).Msg("unknown AGI script")
}

package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// AGIEnv is the environment a test's Asterisk sends for one FastAGI
// session: the fields the service reads, and the script's arguments.
type AGIEnv struct {
	Script   string // agi_network_script
	Channel  string
	UniqueID string
	CallerID string
	Context  string
	Args     []string // agi_arg_1, agi_arg_2, ...
	// Timeout bounds the whole session (0 = 10s): a service that stops
	// answering fails the test instead of hanging it.
	Timeout time.Duration
}

// AGICall plays Asterisk for one FastAGI session with the server at addr:
// it sends env, then answers every command with reply(command) until the
// server closes the session, and returns the commands seen, in order. The
// error is the connection's (dialling, writing, or the deadline); the
// server closing it is the session's end, not an error.
func AGICall(addr string, env AGIEnv, reply func(cmd string) string) ([]string, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	timeout := env.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "agi_network: yes\nagi_network_script: %s\nagi_channel: %s\nagi_uniqueid: %s\nagi_callerid: %s\nagi_context: %s\n",
		env.Script, env.Channel, env.UniqueID, env.CallerID, env.Context)
	for i, a := range env.Args {
		fmt.Fprintf(&b, "agi_arg_%d: %s\n", i+1, a)
	}
	b.WriteString("\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	var seen []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				return seen, err
			}
			return seen, nil // the server closed the session
		}
		cmd := strings.TrimSuffix(line, "\n")
		seen = append(seen, cmd)
		if _, err := conn.Write([]byte(reply(cmd) + "\n")); err != nil {
			return seen, err
		}
	}
}

//go:build e2e

package recordings

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"
)

// The recording every client fetches: ten minutes of MixMonitor's wav
// (8 kHz, 16-bit, mono), 9.6 MB of audio.
const (
	benchSeconds = 10 * 60
	benchRel     = "2026/12/07/in-5252-1733560000.42.wav"
	benchCallID  = "1733560000.42"
	benchClients = 50
	// Whole files per client and round: 50 × 4 × 9.6 MB, about 1.9 GB a
	// server a round.
	benchWholePerClient = 4
	// 64 KiB ranges per client and round, as a player seeking asks.
	benchRangePerClient = 200
	benchRangeSize      = 64 << 10
)

// benchServeEnv, when set, makes the test binary the recordings server of
// BenchmarkServeAgainstNginx and TestServeSendsTheFileBySendfile (see
// TestMain): a process of its own, as nginx is, so that neither server
// shares the load generator's runtime, and strace sees the server alone.
const benchServeEnv = "MOVIDESK_AGI_BENCH_RECORDINGS_SERVE"

type benchServeConfig struct {
	Dir, KeyFile, CallID, Rel string
}

func TestMain(m *testing.M) {
	if v := os.Getenv(benchServeEnv); v != "" {
		if err := benchServe(v); err != nil {
			fmt.Fprintln(os.Stderr, "recordings bench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type oneFile struct{ callID, rel string }

func (o oneFile) Locate(_ context.Context, ref string) (string, string, error) {
	if ref != Ref(o.callID) {
		return "", "", ErrUnknown
	}
	return o.callID, o.rel, nil
}

// benchServe serves recordings on the listening socket inherited as fd 3
// until its parent closes stdin.
func benchServe(v string) error {
	var c benchServeConfig
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		return err
	}
	key, err := LoadKey(c.KeyFile)
	if err != nil {
		return err
	}
	srv, err := NewServer(c.Dir, NewRing(key), oneFile{c.CallID, c.Rel}, Config{})
	if err != nil {
		return err
	}
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		hs.Close()
	}()
	if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// benchWAV writes a closed PCM WAV of the given length: the header's sizes
// filled in, as MixMonitor leaves it on hangup.
func benchWAV(path string, seconds int) ([]byte, error) {
	const rate, width = 8000, 2
	data := make([]byte, seconds*rate*width)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	b := wav(0) // the header, then the real sizes
	b = append(b[:44], data...)
	binary.LittleEndian.PutUint32(b[4:], uint32(36+len(data)))
	binary.LittleEndian.PutUint32(b[40:], uint32(len(data)))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	// Closed long ago: not "still recording".
	old := time.Now().Add(-time.Hour)
	return b, os.Chtimes(path, old, old)
}

// listenFile is a loopback listening socket, as a file to hand a child:
// the child accepts on it, so clients never meet a port not yet bound.
func listenFile(b testing.TB) (*os.File, string) {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		b.Fatal(err)
	}
	return f, l.Addr().String()
}

// startChild runs cmd with the listener as fd 3 and stdin a pipe whose
// close stops it (the recordings server; nginx is stopped by a signal
// first); it is killed if it has not stopped 10 s later. The returned stop
// does that, and waits; cleanup calls it too.
func startChild(b testing.TB, cmd *exec.Cmd, lf *os.File, signal ...os.Signal) (stop func()) {
	b.Helper()
	cmd.ExtraFiles = []*os.File{lf}
	// Should the test die, its servers go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s: %v", cmd.Path, err)
	}
	// exec hands the socket over in blocking mode (os.File.Fd), and nginx
	// leaves an inherited socket as it is: a worker that lost a connection
	// to the other would then wait in accept(), its own clients with it.
	// Set before any client connects, so no accept sees the blocking mode.
	if err := syscall.SetNonblock(int(lf.Fd()), true); err != nil {
		b.Fatal(err)
	}
	lf.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop = sync.OnceFunc(func() {
		for _, sig := range signal {
			_ = cmd.Process.Signal(sig)
		}
		stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if s := strings.TrimSpace(stderr.String()); s != "" {
			b.Logf("%s said:\n%s", filepath.Base(cmd.Path), s)
		}
	})
	b.Cleanup(stop)
	return stop
}

// startNginx runs a private nginx serving dir on an inherited loopback
// socket: its own configuration and temporary folders, in the foreground,
// sendfile on, no access log; stopped at cleanup.
func startNginx(b testing.TB, nginx, dir string) string {
	b.Helper()
	prefix := b.TempDir()
	lf, addr := listenFile(b)
	conf := fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	keepalive_requests 1000000;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	types { audio/wav wav; }
	default_type application/octet-stream;
	server {
		listen %[2]s;
		root %[3]s;
	}
}
`, prefix, addr, dir)
	if err := os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	// NGINX names the sockets a new nginx inherits (its binary upgrade);
	// SIGINT is its fast shutdown, workers included.
	cmd := exec.Command(nginx, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"), "-e", "stderr")
	cmd.Env = append(os.Environ(), "NGINX=3;")
	startChild(b, cmd, lf, os.Interrupt)
	return "http://" + addr
}

// startService runs this test binary as the recordings server (TestMain),
// through the command wrap when given (strace), and returns the link to
// the recording and what stops the server.
func startService(b testing.TB, dir string, wrap ...string) (link string, stop func()) {
	b.Helper()
	keyFile := filepath.Join(b.TempDir(), "key")
	key, err := LoadOrCreateKey(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	lf, addr := listenFile(b)
	cfg, _ := json.Marshal(benchServeConfig{Dir: dir, KeyFile: keyFile, CallID: benchCallID, Rel: benchRel})
	args := slices.Concat(wrap, []string{os.Args[0]})
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), benchServeEnv+"="+string(cfg))
	stop = startChild(b, cmd, lf)
	link, err = (&Signer{PublicURL: "http://" + addr, Keys: NewRing(key)}).Link(benchCallID)
	if err != nil {
		b.Fatal(err)
	}
	return link, stop
}

// loadResult is one server's share of a round.
type loadResult struct {
	bytes, requests int64
	elapsed         time.Duration
}

// load runs benchClients clients against url, each on its own keep-alive
// connection: perClient whole-file GETs, or as many GETs of a random
// 64 KiB range when ranges is set. Every response is checked for its
// status and length.
func load(b *testing.B, client *http.Client, url string, size int64, perClient int, ranges bool) loadResult {
	b.Helper()
	var (
		total, reqs atomic.Int64
		wg          sync.WaitGroup
		errOnce     sync.Once
		firstErr    error
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	start := time.Now()
	for c := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			buf := make([]byte, 256<<10)
			for range perClient {
				req, _ := http.NewRequest("GET", url, nil)
				want, status := size, http.StatusOK
				if ranges {
					from := 44 + r.Int64N(size-44-benchRangeSize)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, from+benchRangeSize-1))
					want, status = benchRangeSize, http.StatusPartialContent
				}
				resp, err := client.Do(req)
				if err != nil {
					fail(err)
					return
				}
				// CopyBuffer with the body hidden behind a plain Reader:
				// one large buffer, not io.Discard's small ones.
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
				resp.Body.Close()
				if err == nil && (resp.StatusCode != status || n != want) {
					err = fmt.Errorf("%s: status %d, %d bytes; want %d, %d bytes", url, resp.StatusCode, n, status, want)
				}
				if err != nil {
					fail(err)
					return
				}
				total.Add(n)
				reqs.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return loadResult{total.Load(), reqs.Load(), time.Since(start)}
}

// countingClient is a keep-alive client for up to benchClients connections
// that counts the connections it opens.
func countingClient(conns *atomic.Int64) *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		MaxConnsPerHost:     benchClients,
		MaxIdleConnsPerHost: benchClients,
		DisableCompression:  true,
	}}
}

// sameBody fetches url (with a Range header when rng is set) and compares
// it with want.
func sameBody(b testing.TB, client *http.Client, url, rng string, want []byte) {
	b.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, want) {
		b.Fatalf("%s (range %q): status %d, %d bytes (%v); want the file's %d bytes", url, rng, resp.StatusCode, len(got), err, len(want))
	}
}

// BenchmarkServeAgainstNginx serves a ten-minute recording to 50 clients
// at once through the recordings server and through nginx (sendfile on),
// the same file from the same page cache, the two taking turns each round.
// It reports each one's MB/s and the ratio service/nginx; docs/benchmarks.md
// holds the figures.
func BenchmarkServeAgainstNginx(b *testing.B) {
	nginx, err := debpkg.Need(b.Context(), "/usr/sbin/nginx", "nginx")
	if err != nil {
		b.Fatal(err)
	}
	// nginx's workers run as nobody: the folder is readable to all, as
	// the temporary folders above it are not.
	dir, err := os.MkdirTemp("", "movidesk-agi-bench-recordings-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	file, err := benchWAV(filepath.Join(dir, benchRel), benchSeconds)
	if err != nil {
		b.Fatal(err)
	}
	size := int64(len(file))

	link, _ := startService(b, dir)
	ngx := startNginx(b, nginx, dir) + "/" + benchRel
	servers := []struct{ name, url string }{{"service", link}, {"nginx", ngx}}

	var conns [2]atomic.Int64
	clients := [2]*http.Client{countingClient(&conns[0]), countingClient(&conns[1])}
	for i, s := range servers {
		sameBody(b, clients[i], s.url, "", file)
		sameBody(b, clients[i], s.url, "bytes=1000000-1065535", file[1000000:1065536])
	}

	for _, v := range []struct {
		name      string
		perClient int
		ranges    bool
	}{
		{"whole", benchWholePerClient, false},
		{"range64k", benchRangePerClient, true},
	} {
		b.Run(v.name, func(b *testing.B) {
			var res [2]loadResult
			before := [2]int64{conns[0].Load(), conns[1].Load()}
			for i := range b.N {
				// Turns alternate, so that neither always runs on a
				// cache or a scheduler the other warmed.
				for k := range 2 {
					j := (i + k) % 2
					r := load(b, clients[j], servers[j].url, size, v.perClient, v.ranges)
					res[j].bytes += r.bytes
					res[j].requests += r.requests
					res[j].elapsed += r.elapsed
				}
			}
			mbps := func(r loadResult) float64 { return float64(r.bytes) / 1e6 / r.elapsed.Seconds() }
			b.ReportMetric(mbps(res[0]), "service-MB/s")
			b.ReportMetric(mbps(res[1]), "nginx-MB/s")
			b.ReportMetric(mbps(res[0])/mbps(res[1]), "service/nginx")
			if v.ranges {
				b.ReportMetric(float64(res[0].requests)/res[0].elapsed.Seconds(), "service-req/s")
				b.ReportMetric(float64(res[1].requests)/res[1].elapsed.Seconds(), "nginx-req/s")
			}
			// Keep-alive held: no more connections than clients.
			for j := range 2 {
				if n := conns[j].Load() - before[j]; n > benchClients {
					b.Fatalf("%s: %d connections for %d clients; keep-alive did not hold", servers[j].name, n, benchClients)
				}
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// sendfileRE is a sendfile call's result in strace's output, whether on
// one line or "resumed" on another thread's.
var sendfileRE = regexp.MustCompile(`(?m)sendfile.*\) += (\d+)\s*$`)

// TestServeSendsTheFileBySendfile: the server, a process of its own under
// strace, hands a recording to the kernel with sendfile (no copy through
// the service's memory), a whole file and a range alike; Server's
// countingWriter keeps that path open (ReadFrom).
func TestServeSendsTheFileBySendfile(t *testing.T) {
	strace, err := debpkg.Need(t.Context(), "/usr/bin/strace", "strace")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file, err := benchWAV(filepath.Join(dir, benchRel), 60)
	if err != nil {
		t.Fatal(err)
	}
	trace := filepath.Join(t.TempDir(), "strace.out")
	link, stop := startService(t, dir, strace, "-f", "-qq", "-e", "trace=sendfile", "-e", "signal=none", "-o", trace)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	sameBody(t, client, link, "", file)
	sameBody(t, client, link, "bytes=100000-165535", file[100000:165536])
	stop() // strace has written every line once the server is gone
	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	for _, m := range sendfileRE.FindAllSubmatch(out, -1) {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		sent += n
	}
	// net/http writes the first 512 bytes of each itself, with the headers.
	served := int64(len(file) + 65536)
	if want := served - 2*512; sent < want {
		t.Errorf("sendfile sent %d bytes of the %d served, want at least %d; strace saw:\n%s", sent, served, want, out)
	}
}

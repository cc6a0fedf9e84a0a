//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asteriskTZ is the time zone movidesk-agi runs in, and Asterisk's
// environment names: not UTC, so a date sent in local time instead of UTC
// is three hours off. Asterisk's own local time (its log, the dates of its
// CDR) comes from the chroot's /etc/localtime instead: UTC.
const asteriskTZ = "America/Sao_Paulo"

// modules are all that Asterisk loads (modules.conf has autoload=no).
var modules = []string{
	// PJSIP, for Asterisk to call itself over SIP on 127.0.0.1.
	"res_sorcery_config.so",
	"res_sorcery_memory.so",
	"res_sorcery_astdb.so",
	"res_pjproject.so",
	"res_pjsip.so",
	"res_pjsip_session.so",
	"res_pjsip_pubsub.so",
	"chan_pjsip.so",
	"res_pjsip_endpoint_identifier_ip.so",
	"res_pjsip_sdp_rtp.so",
	"res_pjsip_caller_id.so",
	"res_pjsip_nat.so",
	"res_pjsip_refer.so", // an agent's phone passing the call on
	"res_rtp_asterisk.so",
	"res_timing_timerfd.so",
	"bridge_simple.so",
	"codec_ulaw.so",
	"format_wav.so", // MixMonitor's recording
	// FreePBX's wav49: GSM in a WAV file, which no browser plays.
	"codec_gsm.so",
	"format_wav_gsm.so",
	// AGI; res_agi needs res_speech loaded first.
	"res_speech.so",
	"res_agi.so",
	// channel originate and channel redirect on the CLI.
	"res_clioriginate.so",
	// What the dialplan examples and the suite's own contexts use.
	"pbx_config.so",
	"app_dial.so",
	"app_queue.so",
	"app_stack.so", // Gosub, Dial's U()
	"app_mixmonitor.so",
	"app_transfer.so",
	"app_milliwatt.so", // the caller's voice, for MixMonitor to record
	"func_callerid.so",
	"func_cdr.so",
	"func_channel.so",
	"func_cut.so",
	"func_db.so",
	"func_env.so", // FILE(), the examples' fallback spool
	"func_uri.so", // URIENCODE(), idem
	// What FreePBX's dialplan and its snippets use besides.
	"func_strings.so", // REGEX, STRREPLACE, FIELDQTY, STRFTIME
	"func_logic.so",   // IF
	"app_exec.so",     // ExecIf
	// ARI, for click-to-call: Asterisk's HTTP server (http.conf) is built in.
	"res_http_websocket.so",
	"res_websocket_client.so", // res_ari needs it loaded, though no websocket is used
	"res_stasis.so",
	"res_stasis_answer.so",
	"res_stasis_playback.so",
	"res_stasis_recording.so",
	"res_stasis_snoop.so",
	"res_ari.so",
	"res_ari_model.so",
	"res_ari_asterisk.so",
	"res_ari_channels.so",
	// Call detail records: Master.csv, and a MariaDB table through ODBC
	// (cdr_test.go).
	"cdr_csv.so",
	"res_odbc_transaction.so", // res_odbc requires it
	"res_odbc.so",
	"cdr_adaptive_odbc.so",
	// What Asterisk's own FastAGI scenarios use (fastagi_test.go): the
	// core prompts (GSM), recordings in ulaw, and the far ends' apps.
	"format_gsm.so",
	"format_pcm.so",
	"app_echo.so",
	"app_senddtmf.so",
	"app_talkdetect.so",
	"app_playback.so",
	"app_system.so",
	"func_global.so",
}

// The ARI user of the test Asterisk (ari.conf).
const (
	ariUser     = "movidesk"
	ariPassword = "e2e-ari-secret"
)

// asterisk is a running Asterisk in the chroot.
type asterisk struct {
	root    string // the chroot
	dir     string // this run's directory, as Asterisk sees it
	sipPort int
	// httpPort is Asterisk's HTTP server, where ARI answers on 127.0.0.1.
	httpPort int
	// resolvConf is, outside the chroot, the file Asterisk reads as its
	// /etc/resolv.conf: this run's own (see startAsterisk). Empty when the
	// machine gives no mount namespace: Asterisk then reads the chroot's.
	resolvConf string
	cmd        *exec.Cmd
	exited     chan struct{}
}

// host turns a path inside the chroot into one outside.
func (a *asterisk) host(p string) string { return filepath.Join(a.root, p) }

// startAsterisk writes a configuration for this run into the chroot (the
// chroot's own /etc/asterisk is left alone), starts Asterisk and waits
// until it has fully booted.
// cdrPort is the MariaDB that cdr_adaptive_odbc writes into.
func startAsterisk(root, agiURL string, cdrPort int) (*asterisk, error) {
	tmp, err := os.MkdirTemp(filepath.Join(root, "tmp"), "movidesk-agi-e2e-")
	if err != nil {
		return nil, fmt.Errorf("asterisk: run directory in %s: %w", root, err)
	}
	a := &asterisk{root: root, dir: "/" + strings.TrimPrefix(tmp, filepath.Clean(root)+"/")}
	for _, d := range []string{"etc/examples", "run", "log", "spool/monitor", "spool/movidesk-agi", "spool/outgoing", "db", "cache", "log/cdr-csv"} {
		if err := os.MkdirAll(a.host(a.dir+"/"+d), 0o755); err != nil {
			return nil, fmt.Errorf("asterisk: %w", err)
		}
	}
	if a.sipPort, err = freeUDPPort(); err != nil {
		return nil, err
	}
	if a.httpPort, err = freeLoopbackTCPPort(); err != nil {
		return nil, err
	}
	if err := a.writeConfig(agiURL, cdrPort); err != nil {
		return nil, err
	}

	console, err := os.Create(a.host(a.dir + "/log/console.log"))
	if err != nil {
		return nil, fmt.Errorf("asterisk: %w", err)
	}
	defer console.Close()
	// Without -U: as root with -U root, Asterisk drops capabilities and
	// cannot open the chroot's /var/lib/asterisk.
	asteriskArgs := []string{"/usr/sbin/asterisk", "-C", a.conf(), "-f", "-n"}
	a.cmd = exec.Command("chroot", append([]string{root}, asteriskArgs...)...)
	if a.resolvConf, err = a.ownResolvConf(); err != nil {
		return nil, err
	}
	if a.resolvConf != "" {
		// Asterisk's resolver reads the chroot's /etc/resolv.conf, which
		// every run shares. In a mount namespace of its own, this run's
		// file is bound over it, so that a test can point Asterisk at a DNS
		// server of its own (ha_test.go) and no other run sees it.
		a.cmd = exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--",
			"sh", "-c", `mount --bind "$0" "$1/etc/resolv.conf" && exec chroot "$@"`, a.resolvConf, root}, asteriskArgs...)...)
	}
	// ODBCSYSINI: unixODBC reads this run's odbc.ini, not the chroot's.
	a.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TZ=" + asteriskTZ, "HOME=/root", "ODBCSYSINI=" + a.dir + "/etc"}
	a.cmd.Stdout, a.cmd.Stderr = console, console
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("asterisk: start in %s: %w", root, err)
	}
	a.exited = make(chan struct{})
	go func() {
		a.cmd.Wait()
		close(a.exited)
	}()

	if err := a.waitBooted(60 * time.Second); err != nil {
		a.stop(false)
		return nil, err
	}
	if err := a.checkModules(); err != nil {
		a.stop(false)
		return nil, err
	}
	if err := a.checkConfig(); err != nil {
		a.stop(false)
		return nil, err
	}
	return a, nil
}

// ownResolvConf copies the chroot's /etc/resolv.conf into the run
// directory, for startAsterisk to bind over it, and returns the copy's
// path; "" when this machine cannot make a mount namespace, where
// Asterisk reads the chroot's file itself.
func (a *asterisk) ownResolvConf() (string, error) {
	if err := exec.Command("unshare", "--mount", "--propagation", "private", "true").Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: no mount namespace (unshare --mount: %v): Asterisk reads the chroot's own /etc/resolv.conf, and the tests that serve it DNS records fail\n", err)
		return "", nil
	}
	shared := a.host("/etc/resolv.conf")
	st, err := os.Lstat(shared)
	if os.IsNotExist(err) {
		// A file to bind over; empty, as a missing one reads.
		f, cerr := os.OpenFile(shared, os.O_WRONLY|os.O_CREATE, 0o644)
		if cerr != nil {
			return "", fmt.Errorf("asterisk: %w", cerr)
		}
		f.Close()
		st, err = os.Lstat(shared)
	}
	if err != nil {
		return "", fmt.Errorf("asterisk: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("asterisk: %s is not a regular file (%s): this run cannot bind its own over it", shared, st.Mode().Type())
	}
	b, err := os.ReadFile(shared)
	if err != nil {
		return "", fmt.Errorf("asterisk: %w", err)
	}
	own := a.host(a.dir + "/etc/resolv.conf")
	if err := os.WriteFile(own, b, 0o644); err != nil {
		return "", fmt.Errorf("asterisk: %w", err)
	}
	return own, nil
}

// configComplaint is how Asterisk logs a line of the dialplan or of
// queues.conf that it could not take.
var configComplaint = regexp.MustCompile(`(?m)^.*(WARNING|ERROR)\[\d+\][^ ]* (pbx_config|config|app_queue)\.c: .*$`)

// checkConfig fails if Asterisk complained about the dialplan or the
// queues while loading them, or if an example context is missing: a broken
// example must fail the suite loudly, not just change a call's outcome.
func (a *asterisk) checkConfig() error {
	log, err := os.ReadFile(a.host(a.dir + "/log/messages.log"))
	if err != nil {
		return fmt.Errorf("asterisk: %w", err)
	}
	if m := configComplaint.FindAllString(string(log), -1); len(m) > 0 {
		return fmt.Errorf("asterisk complained about the configuration:\n%s", strings.Join(m, "\n"))
	}
	for _, ctx := range append([]string{"movidesk-transfer", "movidesk-fallback", "movidesk-dial", "movidesk-hangup", "movidesk-queue", "movidesk-recording", "movidesk-recording-later", "movidesk-recording-served", "movidesk-click-to-call", "movidesk-click-to-call-end", "movidesk-doctor", "movidesk-doctor-agent"}, freepbxContexts...) {
		out, err := a.cli("dialplan show " + ctx)
		if err != nil || !strings.Contains(out, "'"+ctx+"'") || strings.Contains(out, "There is no existence") {
			return fmt.Errorf("asterisk: the examples' context %s is not loaded: %v %s", ctx, err, out)
		}
	}
	out, err := a.cli("queue show support")
	if err != nil || !strings.Contains(out, "PJSIP/5252") {
		return fmt.Errorf("asterisk: the example queue support, with member PJSIP/5252, is not loaded: %v %s", err, out)
	}
	return nil
}

func (a *asterisk) conf() string { return a.dir + "/etc/asterisk.conf" }

// waitBooted polls "core waitfullybooted" until Asterisk answers it; the
// remote console fails until Asterisk has created its control socket.
func (a *asterisk) waitBooted(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		out, err := a.cli("core waitfullybooted")
		if err == nil && strings.Contains(out, "fully booted") {
			return nil
		}
		select {
		case <-a.exited:
			return fmt.Errorf("asterisk exited while booting; see %s", a.host(a.dir+"/log"))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("asterisk did not boot in %v (last answer %q, %v); see %s", limit, out, err, a.host(a.dir+"/log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkModules fails if a module of the list did not load: a missing one
// would otherwise show up as a confusing dialplan failure much later.
func (a *asterisk) checkModules() error {
	out, err := a.cli("module show")
	if err != nil {
		return err
	}
	var missing []string
	for _, m := range modules {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m) + `\s.*Running`).MatchString(out) {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("asterisk: modules not running: %s; see %s", strings.Join(missing, ", "), a.host(a.dir+"/log/messages.log"))
	}
	return nil
}

// stop stops Asterisk and, if clean, removes the run directory; otherwise
// it is kept and named, for its logs.
func (a *asterisk) stop(clean bool) error {
	if a.cmd != nil && a.cmd.Process != nil {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(15 * time.Second):
			a.cmd.Process.Kill()
			<-a.exited
		}
	}
	if !clean {
		fmt.Fprintf(os.Stderr, "e2e: Asterisk's configuration and logs are kept in %s\n", a.host(a.dir))
		return nil
	}
	return os.RemoveAll(a.host(a.dir))
}

// cli runs one Asterisk CLI command and returns its output.
func (a *asterisk) cli(command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", a.root, "/usr/sbin/asterisk", "-C", a.conf(), "-rx", command)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TZ=" + asteriskTZ}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("asterisk -rx %q: %w: %s", command, err, out.String())
	}
	return out.String(), nil
}

// mustCLI runs a CLI command and fails the test if Asterisk refuses it.
func (a *asterisk) mustCLI(t testing.TB, command string) string {
	t.Helper()
	out, err := a.cli(command)
	if err == nil && (strings.Contains(out, "No such command") || strings.Contains(out, "failed")) {
		err = fmt.Errorf("asterisk -rx %q: %s", command, out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// astChannel is one line of "core show channels concise".
type astChannel struct {
	Name, Context, Exten, State, App, Data, CallerID, BridgeID, UniqueID string
}

func (a *asterisk) channels() ([]astChannel, error) {
	out, err := a.cli("core show channels concise")
	if err != nil {
		return nil, err
	}
	var chans []astChannel
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, "!")
		if len(f) < 14 {
			continue
		}
		chans = append(chans, astChannel{Name: f[0], Context: f[1], Exten: f[2], State: f[4], App: f[5], Data: f[6], CallerID: f[7], BridgeID: f[12], UniqueID: f[13]})
	}
	return chans, nil
}

var activeChannels = regexp.MustCompile(`(?m)^(\d+) active channels?`)

// channelCount is Asterisk's "core show channels count".
func (a *asterisk) channelCount() (int, error) {
	out, err := a.cli("core show channels count")
	if err != nil {
		return 0, err
	}
	m := activeChannels.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("asterisk: no channel count in %q", out)
	}
	return strconv.Atoi(m[1])
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s (last error: %v)", limit, what, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitIdle waits until Asterisk has no channel left, so that one test's
// calls never spill into the next.
func (a *asterisk) waitIdle(t testing.TB) {
	t.Helper()
	waitFor(t, 60*time.Second, "Asterisk to have no channel left", func() (bool, error) {
		n, err := a.channelCount()
		return err == nil && n == 0, err
	})
}

// dbGet reads the Asterisk database (where the suite's dialplan notes what
// it saw); ok is false while the key does not exist.
func (a *asterisk) dbGet(family, key string) (string, bool, error) {
	out, err := a.cli(fmt.Sprintf("database get %s %s", family, key))
	if err != nil {
		return "", false, err
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(out), "Value: ")
	return v, ok, nil
}

// ariURL is the ARI of this Asterisk.
func (a *asterisk) ariURL() string { return fmt.Sprintf("http://127.0.0.1:%d/ari", a.httpPort) }

func freeLoopbackTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free TCP port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free UDP port on 127.0.0.1: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// writeConfig writes asterisk.conf and the files it points at. The dialplan
// examples are copied byte for byte and #included, so the examples
// themselves are what runs.
func (a *asterisk) writeConfig(agiURL string, cdrPort int) error {
	examples, err := filepath.Glob("../dialplan-examples/*.conf")
	if err != nil || len(examples) == 0 {
		return fmt.Errorf("asterisk: no dialplan examples in ../dialplan-examples (%v)", err)
	}
	freepbx, err := filepath.Glob("../dialplan-examples/freepbx/*.conf")
	if err != nil || len(freepbx) == 0 {
		return fmt.Errorf("asterisk: no FreePBX snippets in ../dialplan-examples/freepbx (%v)", err)
	}
	if err := os.MkdirAll(a.host(a.dir+"/etc/examples/freepbx"), 0o755); err != nil {
		return fmt.Errorf("asterisk: %w", err)
	}
	for _, e := range append(examples, freepbx...) {
		b, err := os.ReadFile(e)
		if err != nil {
			return fmt.Errorf("asterisk: %w", err)
		}
		dst := "/etc/examples/" + filepath.Base(e)
		if filepath.Base(filepath.Dir(e)) == "freepbx" {
			dst = "/etc/examples/freepbx/" + filepath.Base(e)
		}
		if err := os.WriteFile(a.host(a.dir+dst), b, 0o644); err != nil {
			return fmt.Errorf("asterisk: %w", err)
		}
	}

	d := a.dir
	files := map[string]string{
		"asterisk.conf": `[directories]
astetcdir => ` + d + `/etc
astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules
astvarlibdir => /var/lib/asterisk
astdbdir => ` + d + `/db
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => ` + d + `/spool
astrundir => ` + d + `/run
astlogdir => ` + d + `/log
astcachedir => ` + d + `/cache
astsbindir => /usr/sbin

[options]
verbose = 3
`,
		"modules.conf": "[modules]\nautoload = no\n" + loadLines(),
		"logger.conf": `[general]
[logfiles]
messages.log => notice,warning,error,verbose
`,
		"cdr.conf":        cdrConf,
		"pjsip.conf":      pjsipConf(a.sipPort),
		"extensions.conf": extensionsConf(agiURL, a.spoolPath()),
		"queues.conf":     "#include \"examples/queues.conf\"\n#include \"freepbx-queues.conf\"\n" + e2eQueues,
		// Shaped like what FreePBX generates (freepbx_test.go).
		"freepbx-generated.conf": freepbxGenerated,
		"freepbx-queues.conf":    freepbxQueues,
		"http.conf":              fmt.Sprintf("[general]\nenabled = yes\nbindaddr = 127.0.0.1\nbindport = %d\n", a.httpPort),
		"ari.conf":               "[general]\nenabled = yes\n\n[" + ariUser + "]\ntype = user\nread_only = no\npassword = " + ariPassword + "\n",
	}
	for name, body := range odbcFiles(cdrPort) {
		files[name] = body
	}
	for name, body := range files {
		if err := os.WriteFile(a.host(d+"/etc/"+name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("asterisk: %w", err)
		}
	}
	return nil
}

func loadLines() string {
	var b strings.Builder
	for _, m := range modules {
		b.WriteString("load = " + m + "\n")
	}
	return b.String()
}

// Agents are the agents' PJSIP extensions. Their phones are Asterisk itself
// (context e2e-phone).
var agents = []string{"5252", "5253"}

// pjsipConf makes Asterisk call itself: every INVITE it sends to
// 127.0.0.1:port comes back in through the endpoint "loop".
func pjsipConf(port int) string {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var b strings.Builder
	fmt.Fprintf(&b, `[udp]
type = transport
protocol = udp
bind = %s

; Every INVITE from 127.0.0.1, that is every call Asterisk makes to itself,
; comes in here: the trunk's callers, and the agents' phones ringing.
[loop]
type = endpoint
context = e2e-inbound
disallow = all
allow = ulaw
direct_media = no
; RTP on 127.0.0.1: bound to any address, Asterisk looks its own
; address up in DNS for every channel, which stalls under load.
media_address = 127.0.0.1
bind_rtp_to_media_address = yes
[loop]
type = identify
endpoint = loop
match = 127.0.0.1

; The trunk the callers come from.
[trunk]
type = aor
contact = sip:%s
[trunk]
type = endpoint
aors = trunk
context = e2e-nowhere
disallow = all
allow = ulaw
direct_media = no
media_address = 127.0.0.1
bind_rtp_to_media_address = yes
`, addr, addr)
	for _, ext := range agents {
		// A caller that an agent's phone transfers (REFER) lands in the
		// endpoint's context: the Dial example's, as its comments say.
		fmt.Fprintf(&b, `
[%[1]s]
type = aor
contact = sip:%[1]s@%[2]s
[%[1]s]
type = endpoint
aors = %[1]s
context = movidesk-dial
disallow = all
allow = ulaw
direct_media = no
media_address = 127.0.0.1
bind_rtp_to_media_address = yes
`, ext, addr)
	}
	return b.String()
}

// e2eQueues are the suite's own queues: e2e-linear tries its members in
// turn, 5252 first, each for 3 seconds.
const e2eQueues = `
[e2e-linear]
strategy = linear
timeout = 3
retry = 1
member => PJSIP/5252
member => PJSIP/5253
`

// Number prefixes of the trunk's calls: the first digit picks the example
// context, the rest is the extension dialled there.
const (
	viaDial           = "1"
	viaHangup         = "2"
	viaQueue          = "3"
	viaRecording      = "4"
	viaRecordingLater = "5"
	// The recording served by the service itself ([recordings]).
	viaRecordingServed = "8"
	viaNoHook          = "7" // e2e-nohook: the PBX's records alone know these calls
	viaCapture         = "9"
)

// spoolPath is, inside the chroot, the fallback spool the dialplan writes.
func (a *asterisk) spoolPath() string { return a.dir + "/spool/movidesk-agi/fallback.log" }

func extensionsConf(agiURL, spoolPath string) string {
	return `; The dialplan examples, verbatim.
#include "examples/extensions-movidesk.conf"
#include "examples/extensions-ha.conf"
#include "examples/extensions-dial.conf"
#include "examples/extensions-hangup.conf"
#include "examples/extensions-queue.conf"
#include "examples/extensions-recording.conf"
; A dialplan shaped like FreePBX 17's, with the FreePBX snippets, verbatim,
; where an administrator puts them (globals_custom.conf is included by it).
#include "freepbx-generated.conf"
#include "examples/freepbx/extensions_custom.conf"
#include "examples/extensions-click-to-call.conf"

; After the examples' [globals], so this run's values win.
[globals]
MOVIDESK_AGI=` + agiURL + `
MOVIDESK_SPOOL=` + spoolPath + `

; A caller's phone: dials "<number>*<caller's number>" over the trunk; the
; caller's number goes out in the From header, as from a real carrier.
[e2e-caller]
exten => _X.,1,Set(CALLERID(all)="Caller ${CUT(EXTEN,*,2)}" <${CUT(EXTEN,*,2)}>)
 same => n,Dial(PJSIP/${CUT(EXTEN,*,1)}@trunk)

; What Asterisk receives from itself. Calls to an agent's extension ring
; the agent's phone; the trunk's calls go to the example that their first
; digit names, after the call's ids are noted for the test.
[e2e-inbound]
exten => _52XX,1,Goto(e2e-phone,${EXTEN},1)
exten => _` + viaDial + `XXXX,1,Gosub(e2e-remember,s,1)
 same => n,Goto(movidesk-dial,${EXTEN:1},1)
exten => _` + viaHangup + `XXXX,1,Gosub(e2e-remember,s,1)
 same => n,Goto(movidesk-hangup,${EXTEN:1},1)
exten => _` + viaQueue + `XXXX,1,Gosub(e2e-remember,s,1)
 same => n,Goto(movidesk-queue,${EXTEN:1},1)
exten => _` + viaRecording + `XXXX,1,Gosub(e2e-remember,s,1)
 same => n,Goto(movidesk-recording,${EXTEN:1},1)
exten => _` + viaRecordingLater + `XXXX,1,Gosub(e2e-remember,s,1)
 same => n,Goto(movidesk-recording-later,${EXTEN:1},1)
exten => _` + viaRecordingServed + `XXXX,1,Gosub(e2e-remember,s,1)
 same => n,Goto(movidesk-recording-served,${EXTEN:1},1)
; A route nobody hooked; a phone's transfer (REFER) stays in it.
exten => _` + viaNoHook + `XXXX,1,Gosub(e2e-remember,s,1)
 same => n,Set(__TRANSFER_CONTEXT=e2e-nohook)
 same => n,Goto(e2e-nohook,${EXTEN:1},1)
exten => _` + viaCapture + `XXX,1,Gosub(e2e-remember,s,1)
 same => n,Goto(e2e-capture,${EXTEN:1},1)
; A customer called from a ticket (click-to-call), over the trunk.
exten => _ZZ9XXXXXXXX,1,Goto(e2e-customer,${EXTEN},1)

; What an administrator forgot to hook: an extension, a queue whose
; members are tried in turn, FreePBX's queue of Local channel members, a
; ring group. No AGI, no spool: the calls reach Movidesk only through
; reconciliation with the PBX's records (reconcile_test.go).
[e2e-nohook]
exten => _52XX,1,Dial(PJSIP/${EXTEN},30)
 same => n,Hangup()
exten => 4100,1,Answer()
 same => n,Queue(e2e-linear,t,,,60)
 same => n,Hangup()
exten => 4001,1,Queue(4001,t,,,60)
 same => n,Hangup()
exten => 6100,1,Dial(PJSIP/5252&PJSIP/5253,30)
 same => n,Hangup()

; A customer's phone: notes the call for the test, then answers, or is busy
; when the test put "busy" in the database for the number.
[e2e-customer]
exten => _X.,1,Set(DB(e2e-customer/${EXTEN})=${CHANNEL} ${CALLERID(num)})
 same => n,GotoIf($["${DB(e2e-customer-busy/${EXTEN})}" = "busy"]?busy)
 same => n,Answer()
 same => n,Milliwatt()
 same => n(busy),Busy(10)

[e2e-remember]
exten => s,1,Set(DB(e2e-call/${CALLERID(num)})=${CHANNEL(linkedid)} ${UNIQUEID} ${CDR(start,u)} ${CHANNEL})
 same => n,Return()

; An agent's phone. It answers, unless the test put "ring" in the database
; for the extension, or "after:<other>": answer once the other agent's phone
; has rung for the same caller (a queue ringing both at once would
; otherwise be answered before the other's phone is reached); it notes its
; channel for the test. Redirected to 8<extension>, it transfers the call
; there (SIP REFER), as a phone's transfer key does.
[e2e-phone]
exten => _52XX,1,Set(DB(e2e-phone/${CALLERID(num)}-${EXTEN})=${CHANNEL})
 same => n,GotoIf($["${DB(e2e-agent/${EXTEN})}" = "ring"]?ring)
 same => n,Set(after=${CUT(DB(e2e-agent/${EXTEN}),:,2)})
 same => n,GotoIf($["${after}" = ""]?answer)
 same => n(wait),GotoIf(${DB_EXISTS(e2e-phone/${CALLERID(num)}-${after})}?answer)
 same => n,Ringing()
 same => n,Wait(0.1)
 same => n,Goto(wait)
 same => n(answer),Answer()
 same => n,Wait(600)
 same => n,Hangup()
 same => n(ring),Ringing()
 same => n,Wait(600)
exten => _8XXXX,1,Transfer(${EXTEN:1})
 same => n,Hangup()

; Protocol captures: each extension runs one scripted AGI session.
[e2e-capture]
exten => 901,1,AGI(${MOVIDESK_AGI}/env-block,arg one,queue=1)
 same => n,Hangup()
exten => 902,1,AGI(${MOVIDESK_AGI}/get-variable)
 same => n,Hangup()
exten => 903,1,AGI(${MOVIDESK_AGI}/set-variable-quoted)
 same => n,Hangup()
exten => 904,1,AGI(${MOVIDESK_AGI}/get-full-variable)
 same => n,Hangup()
exten => 905,1,AGI(${MOVIDESK_AGI}/invalid-command)
 same => n,Hangup()
exten => 906,1,AGI(${MOVIDESK_AGI}/usage-520)
 same => n,Hangup()
exten => 907,1,Set(E2E_IN_H=dead-channel-511)
 same => n,Answer()
 same => n,Hangup()
exten => 908,1,Answer()
 same => n,AGI(${MOVIDESK_AGI}/hangup-while-busy)
 same => n,Hangup()
exten => h,1,GotoIf($["${E2E_IN_H}" = ""]?done)
 same => n,AGI(${MOVIDESK_AGI}/${E2E_IN_H})
 same => n(done),NoOp()
` + fastagiDialplan
}

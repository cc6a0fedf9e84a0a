//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// Where the package puts things, as Asterisk's host sees them.
const (
	debConf     = "/etc/movidesk-agi/config.toml"
	debToken    = "/etc/movidesk-agi/token"
	debState    = "/var/lib/movidesk-agi"
	debSpoolDir = "/var/spool/movidesk-agi"
	debSpool    = debSpoolDir + "/fallback.log"
)

// TestDebPackageInAsteriskRoot installs the .deb that dist/deb builds into
// the Asterisk chroot, as an administrator would on the PBX, and checks
// what apt install promises: the user, the directories and their modes, a
// service that does not start without its token while the dialplan spools
// the calls, and, once the token is set, the installed binary, run as the
// package's user under the packaged configuration, sending both the
// spooled call and a live one. Purge then leaves nothing behind.
func TestDebPackageInAsteriskRoot(t *testing.T) {
	deb := buildDeb(t)
	root := pbx.root

	// A run killed before its cleanup left the package installed: start
	// from the chroot as debootstrap made it, and leave it so.
	if err := purgeDeb(root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := purgeDeb(root); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if _, err := inRoot(root, "getent", "group", "asterisk"); err != nil {
		t.Fatalf("the chroot's asterisk package made no asterisk group: %v", err)
	}

	dir, err := os.MkdirTemp(filepath.Join(root, "tmp"), "movidesk-agi-deb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	inside := "/" + strings.TrimPrefix(dir, filepath.Clean(root)+"/") + "/" + filepath.Base(deb)
	if err := copyFile(deb, filepath.Join(dir, filepath.Base(deb))); err != nil {
		t.Fatal(err)
	}

	out, err := inRoot(root, "dpkg", "-i", inside)
	if err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	// Without a token the postinst does not start the service, and says
	// what to do.
	for _, want := range []string{"not started", "movidesk.token_file", debToken, "systemctl start movidesk-agi.socket movidesk-agi.service"} {
		if !strings.Contains(out, want) {
			t.Errorf("dpkg -i does not tell the administrator %q:\n%s", want, out)
		}
	}

	// The system user, in its own group only.
	pw, err := inRoot(root, "getent", "passwd", "movidesk-agi")
	if err != nil {
		t.Fatalf("no movidesk-agi user: %v", err)
	}
	f := strings.Split(strings.TrimSpace(pw), ":")
	if len(f) != 7 {
		t.Fatalf("getent passwd movidesk-agi: %q", pw)
	}
	uid, _ := strconv.Atoi(f[2])
	gid, _ := strconv.Atoi(f[3])
	if uid == 0 || uid >= 1000 || f[5] != debState || f[6] != "/usr/sbin/nologin" {
		t.Errorf("movidesk-agi user %q: want a system user (uid below 1000), home %s, shell /usr/sbin/nologin", pw, debState)
	}
	astGid := groupID(t, root, "asterisk")
	if g := groupID(t, root, "movidesk-agi"); g != gid {
		t.Errorf("movidesk-agi's primary group is %d, the movidesk-agi group %d", gid, g)
	}
	// The service faces the network: it gets none of Asterisk's groups,
	// and Asterisk none of the service's (which reads the token).
	if out, err := inRoot(root, "id", "-nG", "movidesk-agi"); err != nil || strings.TrimSpace(out) != "movidesk-agi" {
		t.Errorf("movidesk-agi's groups: %q %v, want movidesk-agi alone (not asterisk)", out, err)
	}
	if out, err := inRoot(root, "id", "-nG", "asterisk"); err != nil || strings.Contains(" "+strings.TrimSpace(out)+" ", " movidesk-agi ") {
		t.Errorf("asterisk's groups: %q %v, want no movidesk-agi", out, err)
	}

	type meta struct {
		mode     os.FileMode
		uid, gid int
	}
	for path, want := range map[string]meta{
		debState:            {os.ModeDir | 0o750, uid, gid},
		debSpoolDir:         {os.ModeDir | os.ModeSetgid | 0o770, uid, astGid},
		debSpool:            {0o660, uid, astGid},
		"/etc/movidesk-agi": {os.ModeDir | 0o750, 0, gid},
		debConf:             {0o640, 0, gid},
	} {
		st, err := os.Lstat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("after install: %v", err)
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		if got := (meta{st.Mode(), int(sys.Uid), int(sys.Gid)}); got != want {
			t.Errorf("%s: mode %v owner %d:%d, want mode %v owner %d:%d", path, got.mode, got.uid, got.gid, want.mode, want.uid, want.gid)
		}
	}
	// The spool is there before the service ever ran, with the header
	// that Asterisk's FILE() needs to append.
	if b, err := os.ReadFile(filepath.Join(root, debSpool)); err != nil || string(b) != calls.SpoolHeader {
		t.Errorf("spool after install: %q %v, want the service's header line", b, err)
	}
	conffiles, err := inRoot(root, "dpkg-query", "-W", "-f=${Conffiles}", "movidesk-agi")
	if err != nil || !strings.Contains(conffiles, debConf+" ") {
		t.Errorf("dpkg does not keep %s as a conffile: %q %v", debConf, conffiles, err)
	}
	for _, l := range []string{"/etc/systemd/system/sockets.target.wants/movidesk-agi.socket", "/etc/systemd/system/multi-user.target.wants/movidesk-agi.service"} {
		if _, err := os.Lstat(filepath.Join(root, l)); err != nil {
			t.Errorf("not enabled at boot: %v", err)
		}
	}
	version, err := inRoot(root, "dpkg-query", "-W", "-f=${Version}", "movidesk-agi")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := inRoot(root, "/usr/bin/movidesk-agi", "version"); err != nil || out != "movidesk-agi "+version+"\n" {
		t.Errorf("installed movidesk-agi version: %q %v, want the package's %s", out, err, version)
	}

	// Who may touch what: Asterisk, with the groups it already has (no
	// restart), appends to the spool; nobody else reads it, nor the token.
	asUser := func(uid, gid int, groups string, args ...string) error {
		_, err := inRoot(root, append([]string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--groups=" + groups}, args...)...)
		return err
	}
	asAsterisk := func(args ...string) (string, error) {
		return inRoot(root, append([]string{"setpriv", "--reuid=asterisk", "--regid=asterisk", "--init-groups"}, args...)...)
	}
	if out, err := asAsterisk("sh", "-c", "test -r "+debSpool+" && : >>"+debSpool); err != nil {
		t.Errorf("Asterisk's user cannot read and append to the spool %s: %v\n%s", debSpool, err, out)
	}
	if err := asUser(65534, 65534, "65534", "test", "-r", debSpool); err == nil {
		t.Errorf("nobody can read the spool %s", debSpool)
	}

	// The service refuses the packaged configuration until the token is
	// there.
	checkConfig := func() (string, error) {
		return inRoot(root, "setpriv", "--reuid=movidesk-agi", "--regid=movidesk-agi", "--init-groups",
			"/usr/bin/movidesk-agi", "check-config", "-config", debConf)
	}
	if out, err := checkConfig(); err == nil || !strings.Contains(out, "movidesk.token_file") {
		t.Errorf("check-config without the token: %v %s, want a refusal naming movidesk.token_file", err, out)
	}

	// Meanwhile calls come: the service is not running (nothing listens
	// where the dialplan connects) and the dialplan examples spool the
	// events, at the path the package configures.
	port := freeTCPPort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	pbx.mustCLI(t, "dialplan set global MOVIDESK_SPOOL "+debSpool)
	pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+listen)
	t.Cleanup(func() {
		pbx.mustCLI(t, "dialplan set global MOVIDESK_SPOOL "+pbx.spoolPath())
		pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+proxy.Addr())
	})
	setAgent(t, "5252", "answer")
	early := placeCall(t, viaDial+"5252").arrived(t)
	early.waitConnected(t)
	earlyAnswered := time.Now()
	early.agentHangsUp(t, "5252")
	pbx.waitIdle(t)
	earlyEnded := time.Now()
	if got := spooledRoutes(t, filepath.Join(root, debSpool))[early.LinkedID]; strings.Join(got, " ") != "transfer complete" {
		t.Fatalf("spooled while the service was not running: %v, want transfer and complete", got)
	}

	// The administrator sets the token as the package says, and points the
	// configuration at this test's Movidesk and port, with a queue.
	svc := &service{exited: make(chan struct{}), token: newToken(t), spool: filepath.Join(root, debSpool)}
	svc.fake = movidesktest.NewServer(t, svc.token)
	mustInRoot(t, root, "install", "-m", "0640", "-o", "root", "-g", "movidesk-agi", "/dev/null", debToken)
	if err := os.WriteFile(filepath.Join(root, debToken), []byte(svc.token+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := asUser(65534, 65534, "65534", "test", "-r", debToken); err == nil {
		t.Errorf("nobody can read the token %s", debToken)
	}
	if _, err := asAsterisk("test", "-r", debToken); err == nil {
		t.Errorf("Asterisk's user can read the token %s", debToken)
	}
	editConfig(t, filepath.Join(root, debConf),
		`base_url = "https://api.movidesk.com/public/v1"`, fmt.Sprintf("base_url = %q", svc.fake.URL),
		`listen = "127.0.0.1:4573"`, fmt.Sprintf("listen = %q", listen),
		// Other suites' services run beside this one.
		`listen = "127.0.0.1:4574"`, `listen = "127.0.0.1:0"`,
		"default_queue_id = 0", fmt.Sprintf("default_queue_id = %d", defaultQueueID),
	)
	if out, err := checkConfig(); err != nil || !strings.Contains(out, "OK (listen "+listen) || !strings.Contains(out, ", live)") {
		t.Errorf("check-config with the token: %v %s, want OK, live", err, out)
	}

	// The installed binary, as systemd would run it: the package's user,
	// its groups (its own alone), the unit's umask, the packaged
	// configuration.
	cmd := exec.Command("chroot", root, "sh", "-c", `umask 0027 && exec "$@"`, "sh",
		"setpriv", "--reuid=movidesk-agi", "--regid=movidesk-agi", "--init-groups",
		"--pdeathsig=KILL", "/usr/bin/movidesk-agi", "serve", "-config", debConf)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TZ=" + asteriskTZ}
	svc.run(t, cmd)
	if svc.addr != listen {
		t.Fatalf("the service listens on %s, want %s", svc.addr, listen)
	}

	// It sends what the dialplan spooled while it was not running.
	got := svc.waitAccepted(t, 2, 30*time.Second)
	checkRequests(t, got, []wantReq{
		transferred(early, early.LinkedID, defaultQueueID, "5252", early.Start, earlyAnswered),
		completed(early.LinkedID, "", earlyAnswered, earlyEnded),
	})

	// And serves a live call.
	live := placeCall(t, viaDial+"5252").arrived(t)
	live.waitConnected(t)
	liveAnswered := time.Now()
	live.agentHangsUp(t, "5252")
	got = svc.waitAccepted(t, 4, 30*time.Second)
	checkRequests(t, got[2:], []wantReq{
		transferred(live, live.LinkedID, defaultQueueID, "5252", live.Start, liveAnswered),
		completed(live.LinkedID, "", liveAnswered, time.Now()),
	})
	waitCallEvents(t, svc, []callEvent{{"transfer", live.LinkedID, "OK"}, {"complete", live.LinkedID, "OK"}})
	pbx.waitIdle(t)

	// A spool deleted (say by hand) is made again by the service, which is
	// not in Asterisk's group: the setgid directory gives the file that
	// group, and the service its write bit despite the umask.
	if err := os.Remove(filepath.Join(root, debSpool)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the service to recreate the spool", func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(root, debSpool))
		return err == nil && string(b) == calls.SpoolHeader, err
	})
	if st, err := os.Stat(filepath.Join(root, debSpool)); err != nil {
		t.Error(err)
	} else if sys := st.Sys().(*syscall.Stat_t); st.Mode() != 0o660 || int(sys.Uid) != uid || int(sys.Gid) != astGid {
		t.Errorf("recreated spool: mode %v owner %d:%d, want mode %v owner %d:%d", st.Mode(), sys.Uid, sys.Gid, os.FileMode(0o660), uid, astGid)
	}
	if out, err := asAsterisk("sh", "-c", "test -r "+debSpool+" && : >>"+debSpool); err != nil {
		t.Errorf("Asterisk's user cannot append to the recreated spool: %v\n%s", err, out)
	}
	svc.stop(t)

	// The outbox is where the package said, the service's own.
	st, err := os.Stat(filepath.Join(root, debState, "movidesk-agi.db"))
	if err != nil {
		t.Fatalf("outbox: %v", err)
	}
	if sys := st.Sys().(*syscall.Stat_t); int(sys.Uid) != uid || st.Mode().Perm()&0o007 != 0 {
		t.Errorf("outbox %s: owner %d mode %v, want the service's (%d), closed to others", debState+"/movidesk-agi.db", sys.Uid, st.Mode(), uid)
	}

	// An upgrade (here the same package again) keeps the administrator's
	// configuration and token, and the postinst, finding them valid, no
	// longer complains.
	conf, err := os.ReadFile(filepath.Join(root, debConf))
	if err != nil {
		t.Fatal(err)
	}
	// Earlier versions put the service's user in Asterisk's group, and
	// left the spool world-readable: the upgrade undoes both.
	mustInRoot(t, root, "adduser", "--quiet", "movidesk-agi", "asterisk")
	mustInRoot(t, root, "chmod", "0664", debSpool)
	out, err = inRoot(root, "dpkg", "-i", inside)
	if err != nil {
		t.Fatalf("dpkg -i again: %v\n%s", err, out)
	}
	if out, err := inRoot(root, "id", "-nG", "movidesk-agi"); err != nil || strings.TrimSpace(out) != "movidesk-agi" {
		t.Errorf("after the upgrade, movidesk-agi's groups: %q %v, want movidesk-agi alone", out, err)
	}
	if st, err := os.Stat(filepath.Join(root, debSpool)); err != nil {
		t.Error(err)
	} else if st.Mode() != 0o660 {
		t.Errorf("after the upgrade, the spool's mode is %v, want %v", st.Mode(), os.FileMode(0o660))
	}
	if strings.Contains(out, "not started") {
		t.Errorf("dpkg -i again, with the token set, says:\n%s", out)
	}
	if again, err := os.ReadFile(filepath.Join(root, debConf)); err != nil || string(again) != string(conf) {
		t.Errorf("the upgrade changed the administrator's %s (%v)", debConf, err)
	}
	if tok, err := os.ReadFile(filepath.Join(root, debToken)); err != nil || string(tok) != svc.token+"\n" {
		t.Errorf("the upgrade changed the token file (%v)", err)
	}

	// Purge removes the configuration, the token and the data, and the
	// units' enablement.
	if out, err := inRoot(root, "dpkg", "--purge", "movidesk-agi"); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	for _, p := range []string{"/etc/movidesk-agi", debState, debSpoolDir, "/usr/bin/movidesk-agi",
		"/etc/systemd/system/sockets.target.wants/movidesk-agi.socket", "/etc/systemd/system/multi-user.target.wants/movidesk-agi.service"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("after purge, %s: %v, want it gone", p, err)
		}
	}
}

// buildDeb builds the package with dist/deb, as a release would.
func buildDeb(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./deb", "-o", t.TempDir())
	cmd.Dir = "../dist"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run ./deb (in dist/): %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// inRoot runs a command in the Asterisk chroot, as root, and returns its
// output, stdout and stderr together. It does not use the test's context:
// cleanups run it too.
func inRoot(root string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", append([]string{root}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("chroot %s %s: %w", root, strings.Join(args, " "), err)
	}
	return string(out), nil
}

func mustInRoot(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := inRoot(root, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

func groupID(t *testing.T, root, name string) int {
	t.Helper()
	f := strings.Split(mustInRoot(t, root, "getent", "group", name), ":")
	if len(f) < 3 {
		t.Fatalf("getent group %s: %q", name, f)
	}
	id, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// purgeDeb purges the package from the chroot and removes the user the
// postinst made, which Debian's purge leaves.
func purgeDeb(root string) error {
	if out, err := inRoot(root, "dpkg", "--purge", "movidesk-agi"); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	if _, err := inRoot(root, "getent", "passwd", "movidesk-agi"); err == nil {
		if out, err := inRoot(root, "userdel", "movidesk-agi"); err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
	}
	if _, err := inRoot(root, "getent", "group", "movidesk-agi"); err == nil {
		if out, err := inRoot(root, "groupdel", "movidesk-agi"); err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
	}
	return nil
}

// editConfig replaces, in the file at path, each old string (which must
// appear exactly once) by its new one, keeping the file's owner and mode.
func editConfig(t *testing.T, path string, oldNew ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(oldNew); i += 2 {
		if n := strings.Count(s, oldNew[i]); n != 1 {
			t.Fatalf("%s holds %q %d times, want once", path, oldNew[i], n)
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	if err := os.WriteFile(path, []byte(s), 0); err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// freeTCPPort is a loopback port nothing listens on now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

//go:build e2e

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Two users with no passwd entry: setfacl and setpriv take numeric ids.
const (
	serviceUID  = 64990 // the service's user
	asteriskUID = 64991 // Asterisk's
)

// asUID runs a shell command as uid (its own group, no other), with umask
// 027, and returns its output and error.
func asUID(uid int, script string) (string, error) {
	id := strconv.Itoa(uid)
	out, err := exec.Command("setpriv", "--reuid="+id, "--regid="+id, "--clear-groups",
		"sh", "-c", "umask 027 && "+script).CombinedOutput()
	return string(out), err
}

// TestPostinstRecordingsReadOnly runs the postinst's recordings block with
// the real setfacl on a spool laid out as Asterisk's: the service's user
// then reads the recordings there, and those MixMonitor writes later in
// new day folders, and can change none of them; it reads nothing else of
// Asterisk's, even through a symlink in the folder; nobody else gains
// anything; running the block again (an upgrade) changes no ACL.
func TestPostinstRecordingsReadOnly(t *testing.T) {
	aptInstall(t, "setfacl", "acl")
	if os.Geteuid() != 0 {
		t.Fatal("this test acts as other users (setpriv), which needs root")
	}
	// Under /tmp, readable on the way down: t.TempDir's own folders are
	// 0700, which no other user could pass.
	base, err := os.MkdirTemp("", "movidesk-agi-acl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(base, "spool", "asterisk")
	monitor := filepath.Join(spool, "monitor")
	if err := os.Mkdir(filepath.Dir(spool), 0o755); err != nil { // /var/spool
		t.Fatal(err)
	}
	// What Asterisk's package and a day of calls leave: its spool and
	// folders 0750, a recording 0640, all Asterisk's; voicemail beside.
	mkdirs := func(dirs ...string) {
		for _, d := range dirs {
			if err := os.MkdirAll(d, 0o750); err != nil {
				t.Fatal(err)
			}
		}
	}
	own := func() {
		t.Helper()
		if err := filepath.Walk(spool, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, asteriskUID, asteriskUID)
		}); err != nil {
			t.Fatal(err)
		}
	}
	fragment := func() {
		t.Helper()
		out, err := exec.Command("sh", "-c", monitorFragment(t, strconv.Itoa(serviceUID), spool)).CombinedOutput()
		if err != nil || string(out) != "done\n" {
			t.Fatalf("the postinst's recordings block: %v\n%s", err, out)
		}
	}
	getfacl := func(paths ...string) string {
		t.Helper()
		out, err := exec.Command("getfacl", append([]string{"-R", "-P", "-n", "-p"}, paths...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("getfacl: %v\n%s", err, out)
		}
		return string(out)
	}
	svc := "user:" + strconv.Itoa(serviceUID) + ":"

	// Asterisk's spool without its monitor folder: nothing is granted.
	mkdirs(spool)
	own()
	fragment()
	if acl := getfacl(spool); strings.Contains(acl, svc) {
		t.Errorf("without a monitor folder, the spool got an ACL for the service:\n%s", acl)
	}

	day := filepath.Join(monitor, "2026", "12", "06")
	voicemail := filepath.Join(spool, "voicemail", "default", "5252", "INBOX")
	mkdirs(day, voicemail)
	for p, body := range map[string]string{
		filepath.Join(day, "in-5252-1733500000.1.wav"): "RIFF yesterday",
		filepath.Join(voicemail, "msg0000.wav"):        "RIFF voicemail",
	} {
		if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink in the folder to Asterisk's voicemail: -R must not
	// follow it.
	if err := os.Symlink("../voicemail", filepath.Join(monitor, "voicemail")); err != nil {
		t.Fatal(err)
	}
	own()
	fragment()

	// MixMonitor, after the install: a new day's folders, a new file, with
	// a umask that alone would keep the service out.
	today := filepath.Join(monitor, "2026", "12", "07")
	recording := filepath.Join(today, "in-5252-1733560000.42.wav")
	if out, err := asUID(asteriskUID, "mkdir -p "+today+" && printf 'RIFF today' >"+recording); err != nil {
		t.Fatalf("as Asterisk's user, recording: %v\n%s", err, out)
	}

	// The service reads both recordings and lists the folders.
	for p, want := range map[string]string{
		filepath.Join(day, "in-5252-1733500000.1.wav"): "RIFF yesterday",
		recording: "RIFF today",
	} {
		if out, err := asUID(serviceUID, "cat "+p); err != nil || out != want {
			t.Errorf("the service's user reading %s: %q %v, want %q", p, out, err, want)
		}
	}
	if out, err := asUID(serviceUID, "ls "+today); err != nil || out != filepath.Base(recording)+"\n" {
		t.Errorf("the service's user listing %s: %q %v", today, out, err)
	}
	// ...and writes nothing there.
	for _, script := range []string{
		": >>" + recording,
		"rm -f " + recording,
		": >" + filepath.Join(today, "new.wav"),
		"mkdir " + filepath.Join(monitor, "2027"),
		"mv " + recording + " " + filepath.Join(today, "moved.wav"),
	} {
		if out, err := asUID(serviceUID, script); err == nil {
			t.Errorf("the service's user could run %q: %s", script, out)
		}
	}
	// Nor reads the rest of Asterisk's spool, through the symlink or not.
	for _, p := range []string{filepath.Join(voicemail, "msg0000.wav"), filepath.Join(monitor, "voicemail", "default", "5252", "INBOX", "msg0000.wav")} {
		if out, err := asUID(serviceUID, "cat "+p); err == nil {
			t.Errorf("the service's user read %s: %q", p, out)
		}
	}
	// Another user gains nothing.
	if out, err := asUID(65534, "cat "+recording); err == nil {
		t.Errorf("nobody read %s: %q", recording, out)
	}
	// Never write, in any ACL entry of the service's.
	acl := getfacl(spool)
	for _, m := range regexp.MustCompile(`(?m)^(?:default:)?`+regexp.QuoteMeta(svc)+`(\S+)`).FindAllStringSubmatch(acl, -1) {
		if strings.Contains(m[1], "w") {
			t.Errorf("an ACL entry gives the service write: %s", m[0])
		}
	}
	if !strings.Contains(acl, "default:"+svc+"r-x") {
		t.Errorf("no default ACL for the service's user:\n%s", acl)
	}

	// An upgrade runs the block again: the same ACLs.
	fragment()
	if again := getfacl(spool); again != acl {
		t.Errorf("running the block again changed the ACLs:\nbefore:\n%s\nafter:\n%s", acl, again)
	}
}

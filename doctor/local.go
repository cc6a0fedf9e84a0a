package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// CheckSpool checks the fallback spool as Asterisk's user (uid, gid) will
// meet it: a regular file that user can write, whose first line is header
// (FILE() appends only to a file that already holds a line).
func CheckSpool(path, header string, uid, gid int) Result {
	check := "fallback spool " + path + " writable by Asterisk's user, with its header"
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fail(check, "missing", "start movidesk-agi once (it creates the spool with its header), then `chgrp asterisk "+path+" && chmod 0664 "+path+"`")
	}
	if err != nil {
		return fail(check, err.Error(), "run the doctor as root or in Asterisk's group")
	}
	if !fi.Mode().IsRegular() {
		return fail(check, "not a regular file", "set [store] spool in the configuration to a file, e.g. /var/spool/movidesk-agi/fallback.log")
	}
	st, isUnix := fi.Sys().(*syscall.Stat_t)
	if isUnix {
		perm := fi.Mode().Perm()
		writable := (int(st.Uid) == uid && perm&0o200 != 0) ||
			(int(st.Gid) == gid && perm&0o020 != 0) ||
			perm&0o002 != 0
		if !writable {
			return fail(check, fmt.Sprintf("owner %d:%d mode %04o, Asterisk runs as %d:%d", st.Uid, st.Gid, perm, uid, gid),
				"`chgrp asterisk "+path+" && chmod 0664 "+path+"` (the folder must let Asterisk's user in too)")
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(check, err.Error(), "run the doctor as root or in Asterisk's group")
	}
	defer f.Close()
	first, err := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
	if err != nil && first == "" {
		return fail(check, "empty: FILE() writes nothing to a file without a line", "write the header: `printf '%s\\n' '"+strings.TrimSuffix(header, "\n")+"' > "+path+"` (or remove the file and start movidesk-agi, which creates it)")
	}
	if strings.TrimRight(first, "\r\n") != strings.TrimSuffix(header, "\n") {
		return warn(check, "first line is not movidesk-agi's header", "keep the spool for movidesk-agi alone; its first line must be: "+strings.TrimSuffix(header, "\n"))
	}
	return ok(check, "")
}

// CheckSpoolDirs checks that Asterisk's user (uid, member of gids) may
// search every folder on the way to the spool: FILE() opens the spool by
// its whole path, and one folder without search (x) for that user hides
// it, whatever the file's own mode. A folder with an ACL may grant what its
// mode does not: then a warning.
func CheckSpoolDirs(path string, uid int, gids []int) Result {
	check := "folders on the way to " + path + " searchable by Asterisk's user"
	if uid == 0 {
		return ok(check, "Asterisk runs as root")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fail(check, err.Error(), "give [store] spool as an absolute path, e.g. /var/spool/movidesk-agi/fallback.log")
	}
	var dirs []string
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if errors.Is(err, os.ErrNotExist) {
			return fail(check, d+" is missing", "start movidesk-agi once (it creates the spool and its folder), or `mkdir -p "+d+"`")
		}
		if err != nil {
			return fail(check, err.Error(), "run the doctor as root or in Asterisk's group")
		}
		st, isUnix := fi.Sys().(*syscall.Stat_t)
		if !isUnix {
			continue
		}
		perm := fi.Mode().Perm()
		var search bool
		// The kernel's order: the owner's bits alone apply to the owner,
		// the group's to a member, the others' to the rest.
		switch {
		case int(st.Uid) == uid:
			search = perm&0o100 != 0
		case slices.Contains(gids, int(st.Gid)):
			search = perm&0o010 != 0
		default:
			search = perm&0o001 != 0
		}
		if search {
			continue
		}
		detail := fmt.Sprintf("%s: owner %d:%d mode %04o, no search (x) for Asterisk's user (uid %d)", d, st.Uid, st.Gid, perm, uid)
		fix := "`chmod o+x " + d + "` (or `chgrp asterisk " + d + " && chmod g+x " + d + "`)"
		if hasACL(d) {
			return warn(check, detail+"; it has an ACL, which may grant it", "check `getfacl "+d+"` lists Asterisk's user or group with x, or "+fix)
		}
		return fail(check, detail, fix)
	}
	return ok(check, "")
}

// hasACL tells whether path has a POSIX access ACL.
func hasACL(path string) bool {
	n, err := syscall.Getxattr(path, "system.posix_acl_access", nil)
	return err == nil && n > 0
}

// CheckService checks that something accepts TCP connections on addr, the
// address the dialplan's AGI() URLs point at. It only connects and closes:
// sending an AGI environment would run a route, and a route has effects.
// That is also all Asterisk asks before it counts the service as reached.
func CheckService(ctx context.Context, addr string, timeout time.Duration) Result {
	check := "movidesk-agi answers on " + addr
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(check, err.Error(),
			"start movidesk-agi (`systemctl status movidesk-agi`), and make server.listen in its configuration, the MOVIDESK_AGI global of the dialplan and server.allow agree with this address")
	}
	c.Close()
	return ok(check, "")
}

// CheckRecordings checks, as the service's user (uid, gid) would meet
// them, that the recordings folder can be listed and that its newest
// recording can be read: the one MixMonitor wrote last, in a folder it
// made, which only a default ACL (or a lax umask) opens to that user. As
// root the check takes the user's file permissions for its own thread;
// otherwise it checks as the user it runs as.
func CheckRecordings(dir, user string, uid, gid int) Result {
	check := "recordings folder " + dir + " readable by " + user
	fix := "let " + user + " reach and read it, and what MixMonitor writes there later: `setfacl -m u:" + user + ":x " + filepath.Dir(dir) +
		" && setfacl -R -n -m u:" + user + ":rX -m d:u:" + user + ":rX " + dir + "` (the package does this for /var/spool/asterisk/monitor); not Asterisk's group, which could write it"
	type answer struct {
		newest string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		// The thread's file permissions become the user's: it is never
		// unlocked, so it ends with this goroutine rather than serve
		// another with them.
		if os.Geteuid() == 0 {
			runtime.LockOSThread()
			syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0)
			syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
		}
		// Listed first: a file, or a folder the user may search but not
		// list, fails here rather than look like an empty folder.
		f, err := os.Open(dir)
		if err == nil {
			_, err = f.Readdirnames(1)
			f.Close()
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		if err != nil {
			done <- answer{"", err}
			return
		}
		newest, err := newestFile(dir)
		if err == nil && newest != "" {
			var f *os.File
			if f, err = os.Open(newest); err == nil {
				f.Close()
			}
		}
		done <- answer{newest, err}
	}()
	a := <-done
	switch {
	case errors.Is(a.err, os.ErrNotExist) && a.newest == "":
		return fail(check, a.err.Error(), "set [recordings] folder to where MixMonitor writes (Asterisk's astspooldir/monitor, /var/spool/asterisk/monitor)")
	case a.err != nil && a.newest == "":
		return fail(check, a.err.Error(), fix)
	case a.err != nil:
		return fail(check, "its newest recording "+a.newest+" cannot be read: "+a.err.Error(), fix)
	case a.newest == "":
		return ok(check, "no recording yet")
	}
	return ok(check, "its newest recording too")
}

// newestFile is the most recently changed regular file under dir, at most
// four folders down (FreePBX's YYYY/MM/DD), looking at a bounded number of
// entries; "" when there is none.
func newestFile(dir string) (string, error) {
	const maxEntries = 100000
	var newest string
	var at time.Time
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if seen++; seen > maxEntries {
			return filepath.SkipAll
		}
		if d.IsDir() {
			if strings.Count(strings.TrimPrefix(p, dir), string(filepath.Separator)) >= 4 {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err == nil && fi.ModTime().After(at) {
			newest, at = p, fi.ModTime()
		}
		return nil
	})
	return newest, err
}

package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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

// CheckRecordings checks that the recordings folder can be listed by the
// user the doctor runs as (run it as the service's user for a true answer).
func CheckRecordings(dir string) Result {
	check := "recordings folder " + dir + " readable"
	f, err := os.Open(dir)
	if err != nil {
		return fail(check, err.Error(), "point the configuration's recordings folder at where MixMonitor writes (e.g. /var/spool/asterisk/monitor), and let movidesk-agi's user read it: `chmod g+rx` and add that user to Asterisk's group")
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fail(check, err.Error(), "make "+dir+" a folder movidesk-agi's user can list: `chmod g+rx "+dir+"` and add that user to Asterisk's group")
	}
	return ok(check, "")
}

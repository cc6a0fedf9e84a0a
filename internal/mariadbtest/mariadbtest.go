// Package mariadbtest runs a private MariaDB for tests: a data directory
// in a temporary directory, the server on a free loopback port as an
// unprivileged user, stopped by Stop. It installs Debian's mariadb-server
// package when the binaries are missing (apt-get, under the lock the other
// test setups use), and fails loudly when it cannot.
package mariadbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"

	"github.com/go-sql-driver/mysql"
)

// Binaries of Debian's mariadb-server.
const (
	Server    = "/usr/sbin/mariadbd"
	InstallDB = "/usr/bin/mariadb-install-db"
)

// User is the server's user with every privilege, without password, on
// 127.0.0.1.
const User = "test"

// DB is a running MariaDB.
type DB struct {
	dir  string
	port int
	cred *syscall.Credential // the unprivileged user it runs as, nil when not root
	n    atomic.Int64

	mu   sync.Mutex
	proc *exec.Cmd
	done chan struct{} // closed when proc has exited
}

var (
	once   sync.Once
	shared *DB
	errNew error
)

// Shared starts the package's server on first use; stop it from TestMain
// with StopShared.
func Shared() (*DB, error) {
	once.Do(func() { shared, errNew = Start() })
	return shared, errNew
}

// StopShared stops the server Shared started, if any.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// Start installs MariaDB if needed, then creates a data directory and
// starts a server on it.
func Start() (*DB, error) {
	if err := install(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "movidesk-agi-mariadb-")
	if err != nil {
		return nil, err
	}
	s := &DB{dir: dir}
	if os.Geteuid() == 0 {
		// mariadbd refuses to run as root without --user; run it as
		// mysql from the start.
		u, err := user.Lookup("mysql")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("mariadbtest: running as root needs the mysql user (from the mariadb-server package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	install := exec.Command(InstallDB, "--no-defaults", "--datadir="+s.data(), "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve")
	install.Dir = dir
	if s.cred != nil {
		install.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if out, err := install.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadbtest: mariadb-install-db: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err == nil {
			err = s.start()
		}
		if err == nil {
			break
		}
		if attempt == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := s.exec(s.socketDSN(), fmt.Sprintf("CREATE USER '%s'@'127.0.0.1'", User),
		fmt.Sprintf("GRANT ALL ON *.* TO '%s'@'127.0.0.1' WITH GRANT OPTION", User)); err != nil {
		s.Stop()
		return nil, fmt.Errorf("mariadbtest: creating the test user: %w", err)
	}
	return s, nil
}

func (s *DB) data() string   { return filepath.Join(s.dir, "data") }
func (s *DB) socket() string { return filepath.Join(s.dir, "mysqld.sock") }
func (s *DB) log() string    { return filepath.Join(s.dir, "server.log") }

func (s *DB) socketDSN() string { return "root@unix(" + s.socket() + ")/" }

// start runs mariadbd on s.port and waits until it answers.
func (s *DB) start() error {
	cmd := exec.Command(Server, "--no-defaults", "--datadir="+s.data(), "--socket="+s.socket(),
		"--port="+strconv.Itoa(s.port), "--bind-address=127.0.0.1", "--skip-name-resolve",
		"--pid-file="+filepath.Join(s.dir, "mysqld.pid"), "--log-error="+s.log(),
		// Commits reach the OS at once: Kill, as a crash of the server, keeps them.
		"--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin",
		"--max-connections=200")
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mariadbtest: starting mariadbd: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.proc, s.done = cmd, done
	s.mu.Unlock()
	// Wait until it accepts connections, or exits.
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := s.exec(s.socketDSN(), "SELECT 1")
		if err == nil {
			return nil
		}
		select {
		case <-done:
			logText, _ := os.ReadFile(s.log())
			return fmt.Errorf("mariadbtest: mariadbd exited: %v\n%s", cmd.ProcessState, logText)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			logText, _ := os.ReadFile(s.log())
			return fmt.Errorf("mariadbtest: mariadbd does not answer after 60s: %v\n%s", err, logText)
		}
	}
}

func (s *DB) exec(dsn string, stmts ...string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	cfg.Logger = &mysql.NopLogger{}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// install puts Debian's mariadb-server package on the machine when its
// binaries are missing.
func install() error {
	for _, bin := range []string{Server, InstallDB} {
		if _, err := debpkg.Need(context.Background(), bin, "mariadb-server"); err != nil {
			return fmt.Errorf("mariadbtest: MariaDB is needed: %w", err)
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port is the server's TCP port on 127.0.0.1.
func (s *DB) Port() int { return s.port }

// DSN is the go-sql-driver/mysql DSN of database name, as User.
func (s *DB) DSN(name string) string {
	return fmt.Sprintf("%s@tcp(127.0.0.1:%d)/%s", User, s.port, name)
}

// NewDatabase is a new, empty database of the shared server (see Shared),
// as a DSN; it fails t when either cannot be made.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	return s.NewDatabase(t)
}

// NewDatabase is a new, empty database of s, as a DSN; it fails t when it
// cannot be made.
func (s *DB) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	if err := s.exec(s.DSN(""), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	return s.DSN(name)
}

// Stop stops the server (nothing of it is kept) and removes its
// directory.
func (s *DB) Stop() error {
	err := s.kill()
	os.RemoveAll(s.dir)
	return err
}

// kill ends mariadbd at once and waits for it.
func (s *DB) kill() error {
	s.mu.Lock()
	proc, done := s.proc, s.done
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return nil
	}
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("mariadbtest: killing mariadbd: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("mariadbtest: mariadbd does not exit after SIGKILL")
	}
}

// Kill stops the server at once, as a crashed database, keeping its data;
// Restart starts it again on the same port.
func (s *DB) Kill() error { return s.kill() }

// Restart starts a server Kill stopped.
func (s *DB) Restart() error { return s.start() }

// FreePBXCDRTable creates FreePBX 16/17's asteriskcdrdb.cdr: framework's
// installlib/SQL/cdr.sql, with the columns the cdr module adds after it
// (no primary key; an index on calldate), as the tests of what reads it
// and what Asterisk writes into it need it.
const FreePBXCDRTable = `CREATE TABLE cdr (
   calldate datetime NOT NULL default '1000-01-01 00:00:00',
   clid varchar(80) NOT NULL default '',
   src varchar(80) NOT NULL default '',
   dst varchar(80) NOT NULL default '',
   dcontext varchar(80) NOT NULL default '',
   channel varchar(80) NOT NULL default '',
   dstchannel varchar(80) NOT NULL default '',
   lastapp varchar(80) NOT NULL default '',
   lastdata varchar(80) NOT NULL default '',
   duration int(11) NOT NULL default '0',
   billsec int(11) NOT NULL default '0',
   disposition varchar(45) NOT NULL default '',
   amaflags int(11) NOT NULL default '0',
   accountcode varchar(20) NOT NULL default '',
   uniqueid varchar(32) NOT NULL default '',
   userfield varchar(255) NOT NULL default '',
   did varchar(50) NOT NULL default '',
   recordingfile varchar(255) NOT NULL default '',
   cnum varchar(80) NOT NULL default '',
   cnam varchar(80) NOT NULL default '',
   outbound_cnum varchar(80) NOT NULL default '',
   outbound_cnam varchar(80) NOT NULL default '',
   dst_cnam varchar(80) NOT NULL default '',
   linkedid varchar(32) NOT NULL default '',
   peeraccount varchar(80) NOT NULL default '',
   sequence int(11) NOT NULL default '0',
   KEY calldate (calldate),
   KEY dst (dst),
   KEY accountcode (accountcode),
   KEY uniqueid (uniqueid),
   KEY did (did),
   KEY linkedid (linkedid)
)`

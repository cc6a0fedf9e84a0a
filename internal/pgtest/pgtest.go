// Package pgtest runs a private PostgreSQL 15 for tests: initdb into a
// temporary directory, the server on a free loopback port, stopped by
// Stop. It installs Debian's postgresql package when the binaries are
// missing (apt-get, under the lock the other test setups use), and fails
// loudly when it cannot.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"

	"github.com/jackc/pgx/v5"
)

// BinDir holds Debian's PostgreSQL 15 server binaries.
const BinDir = "/usr/lib/postgresql/15/bin"

// Server is a running PostgreSQL.
type Server struct {
	dir  string
	port int
	cred *syscall.Credential // the unprivileged user it runs as, nil when not root
	log  string
	n    atomic.Int64
}

var (
	once   sync.Once
	shared *Server
	errNew error
)

// Shared starts the package's server on first use; stop it from TestMain
// with StopShared.
func Shared() (*Server, error) {
	once.Do(func() { shared, errNew = Start() })
	return shared, errNew
}

// StopShared stops the server Shared started, if any.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// Start installs PostgreSQL if needed, then creates and starts a cluster.
func Start() (*Server, error) {
	if err := install(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "movidesk-agi-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, log: filepath.Join(dir, "server.log")}
	if os.Geteuid() == 0 {
		// initdb refuses root.
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: running as root needs the postgres user (from the postgresql package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.cmd("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c max_connections=200", s.port, dir)
		out, err := s.cmd("pg_ctl", "-D", data, "-l", s.log, "-w", "-t", "30", "-o", opts, "start").CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 2 {
			logText, _ := os.ReadFile(s.log)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, logText)
		}
	}
	return s, nil
}

func (s *Server) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(BinDir, name), args...)
	c.Dir = s.dir
	if s.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return c
}

// install puts Debian's postgresql package on the machine when its
// binaries are missing.
func install() error {
	if _, err := debpkg.Need(context.Background(), filepath.Join(BinDir, "initdb"), "postgresql-15"); err != nil {
		return fmt.Errorf("pgtest: PostgreSQL 15 is needed: %w", err)
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
func (s *Server) Port() int { return s.port }

// DSN is the connection string of database name.
func (s *Server) DSN(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, name)
}

// NewDatabase is a new, empty database of the shared server (see
// Shared), as a connection string; it fails t when either cannot be made.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	return s.NewDatabase(t)
}

// NewDatabase is a new, empty database of s, as a connection string; it
// fails t when it cannot be made.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return s.DSN(name)
}

// Stop stops the server (immediately: nothing of it is kept) and removes
// its directory.
func (s *Server) Stop() error {
	out, err := s.cmd("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop").CombinedOutput()
	os.RemoveAll(s.dir)
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %v\n%s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Kill stops the server at once, as a crashed database, keeping its data;
// Restart starts it again on the same port.
func (s *Server) Kill() error {
	out, err := s.cmd("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Restart starts a server Kill stopped.
func (s *Server) Restart() error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c max_connections=200", s.port, s.dir)
	out, err := s.cmd("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-l", s.log, "-w", "-t", "30", "-o", opts, "start").CombinedOutput()
	if err != nil {
		return errors.Join(fmt.Errorf("pgtest: pg_ctl start: %v", err), errors.New(string(out)))
	}
	return nil
}

// Command topo starts a database topology on loopback, runs a command with
// the environment that points the test suites at it, and stops it:
//
//	topo run galera -- go test -race -count=1 .
//	topo list
//
// The command's exit status is topo's. An unavailable topology (missing
// binaries) exits with status 3 and the reason, unless GORMMUTEX_REQUIRE_DBS=1,
// where it is an error (status 1) like any other start failure. SIGINT and
// SIGTERM are passed on to the command, and the topology is stopped after it
// exits.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gormmutex/gormmutex/internal/topology"
)

func main() { os.Exit(run(os.Args[1:])) }

func usage() int {
	fmt.Fprintf(os.Stderr, "usage: topo run NAME -- COMMAND [ARGS...]\n       topo list\nNAME is one of: %s\n",
		strings.Join(topology.Names(), ", "))
	return 2
}

func run(args []string) int {
	if len(args) == 1 && args[0] == "list" {
		fmt.Println(strings.Join(topology.Names(), "\n"))
		return 0
	}
	if len(args) < 4 || args[0] != "run" || args[2] != "--" {
		return usage()
	}
	name, command := args[1], args[3:]
	start := time.Now()
	r, err := topology.StartNamed(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "topo: %s: %v\n", name, err)
		if errors.Is(err, topology.ErrUnavailable) && os.Getenv(topology.RequireEnv) != "1" {
			return 3
		}
		return 1
	}
	fmt.Fprintf(os.Stderr, "topo: %s started in %s\n", name, time.Since(start).Round(time.Millisecond))
	for _, kv := range r.Env {
		fmt.Fprintf(os.Stderr, "topo:   %s\n", kv)
	}
	code := runCommand(command, r.Env)
	if err := r.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "topo: stopping %s: %v\n", name, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func runCommand(command []string, env []string) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "topo: %v\n", err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if exit.ExitCode() < 0 {
			return 1
		}
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "topo: %v\n", err)
		return 1
	}
}

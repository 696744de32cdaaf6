package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// runComponent runs one upstream command (kube-apiserver, kube-controller-manager) in this
// process, as its own binary would, and exits with its result.
func runComponent(cmd *cobra.Command, args []string) {
	go terminateWhenOrphaned()
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// terminateWhenOrphaned sends this process SIGTERM (the component's own graceful shutdown) once
// its parent is gone; Pdeathsig covers the usual case, this covers a parent thread that
// outlives its process.
func terminateWhenOrphaned() {
	parent := os.Getppid()
	for {
		time.Sleep(500 * time.Millisecond)
		if os.Getppid() != parent {
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
			return
		}
	}
}

// component is a running child process of this binary.
type component struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// startComponent starts this binary as name (argv[0]) with args, its output in dir/name.log; exited receives the
// name when it ends.
func startComponent(dir, name string, args []string, exited chan<- string) (*component, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable: %w", err)
	}
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Args[0] = name
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(c.done)
		select {
		case exited <- name:
		default:
		}
	}()
	return c, nil
}

// stop asks the component to shut down (SIGTERM) and kills it if it has not within the grace
// period.
func (c *component) stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

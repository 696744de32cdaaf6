// Command kube-control-plane starts a real Kubernetes control plane on loopback for the
// operator's tests: an embedded etcd, kube-apiserver and kube-controller-manager, all built
// from the Kubernetes Go modules pinned in go.mod (one release, v1.36.2).
//
// Usage:
//
//	kube-control-plane --dir DIR [--kubeconfig PATH]
//
// It listens on 127.0.0.1 only, on free ports, writes an admin kubeconfig (token auth, the
// serving CA inlined) once the API server answers /readyz and the controller manager has
// created the default ServiceAccount, then prints one line `ready <kubeconfig>` on stdout. It
// stops (children first, then etcd) on SIGTERM or SIGINT, when its parent process dies, or when
// a component exits on its own (then with status 1). Component logs go to DIR/*.log.
//
// The API server and the controller manager run as child processes of this same binary, started
// with argv[0] set to kube-apiserver or kube-controller-manager, each exactly as the upstream
// command runs: both keep process-global state (feature gates, metrics registries, signal
// handlers) that must not be shared.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanagerapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// How long the whole control plane may take to become ready before the start is abandoned.
const startTimeout = 3 * time.Minute

func main() {
	// A component runs under its own name (argv[0]), as its upstream binary would: the name is
	// also its default field manager and user agent, which the recordings show.
	switch filepath.Base(os.Args[0]) {
	case "kube-apiserver":
		runComponent(apiserverapp.NewAPIServerCommand(), os.Args[1:])
		return
	case "kube-controller-manager":
		runComponent(controllermanagerapp.NewControllerManagerCommand(), os.Args[1:])
		return
	}
	dir := flag.String("dir", "", "state directory (certificates, etcd data, logs); created if missing")
	kubeconfig := flag.String("kubeconfig", "", "where to write the admin kubeconfig (default DIR/admin.kubeconfig)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "kube-control-plane: --dir is required")
		os.Exit(2)
	}
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(*dir, "admin.kubeconfig")
	}
	os.Exit(run(*dir, *kubeconfig))
}

func run(dir, kubeconfig string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go cancelWhenOrphaned(ctx, cancel)

	plane, err := start(ctx, dir, kubeconfig)
	if plane != nil {
		defer plane.stop()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-control-plane: %v\n", err)
		return 1
	}
	fmt.Printf("ready %s\n", kubeconfig)

	select {
	case <-ctx.Done():
		fmt.Fprintf(os.Stderr, "kube-control-plane: stopping: %v\n", context.Cause(ctx))
		return 0
	case exited := <-plane.exited:
		fmt.Fprintf(os.Stderr, "kube-control-plane: %s exited on its own (see its log in %s)\n", exited, dir)
		return 1
	}
}

// cancelWhenOrphaned ends the control plane when the process that started it is gone, so a
// killed test run leaves nothing listening.
func cancelWhenOrphaned(ctx context.Context, cancel context.CancelCauseFunc) {
	parent := os.Getppid()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if os.Getppid() != parent {
				cancel(fmt.Errorf("parent process %d is gone", parent))
				return
			}
		}
	}
}

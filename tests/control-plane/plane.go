package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// controlPlane is a started (or partly started) control plane.
type controlPlane struct {
	etcd              *embed.Etcd
	apiserver         *component
	controllerManager *component
	exited            chan string
}

// The controllers the tests rely on: owner-reference garbage collection, namespace deletion,
// and each namespace's default ServiceAccount with its token.
var controllers = []string{
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
}

// start brings the control plane up step by step; on error the returned plane (if any) holds
// what did start, for the caller to stop.
func start(ctx context.Context, dir, kubeconfig string) (*controlPlane, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, startTimeout, fmt.Errorf("not ready within %s", startTimeout))
	defer cancel()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	creds, err := writeCredentials(dir)
	if err != nil {
		return nil, fmt.Errorf("writing credentials: %w", err)
	}
	p := &controlPlane{exited: make(chan string, 2)}

	etcdURL, err := p.startEtcd(ctx, dir)
	if err != nil {
		return p, err
	}
	port, err := freePort()
	if err != nil {
		return p, err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(port)
	p.apiserver, err = startComponent(dir, "kube-apiserver", []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file=" + creds.servingCert,
		"--tls-private-key-file=" + creds.servingKey,
		"--client-ca-file=" + creds.caCert,
		"--token-auth-file=" + creds.tokenFile,
		"--authorization-mode=Node,RBAC",
		// The server's own URL, as the golden recordings' control plane had it (TokenRequest
		// audiences default to the issuer).
		"--service-account-issuer=" + server,
		"--service-account-key-file=" + creds.serviceAccountKey,
		"--service-account-signing-key-file=" + creds.serviceAccountKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// Loopback cannot be a Service endpoint, and no pod runs here to reach one.
		"--endpoint-reconciler-type=none",
		"--v=1",
	}, p.exited)
	if err != nil {
		return p, err
	}
	if err := waitFor(ctx, p.exited, "kube-apiserver /readyz", func() bool {
		return getOK(server+"/readyz", creds)
	}); err != nil {
		return p, err
	}
	if err := writeKubeconfig(kubeconfig+".partial", server, creds); err != nil {
		return p, err
	}
	p.controllerManager, err = startComponent(dir, "kube-controller-manager", []string{
		"--kubeconfig=" + kubeconfig + ".partial",
		"--controllers=" + strings.Join(controllers, ","),
		"--use-service-account-credentials=false",
		"--root-ca-file=" + creds.caCert,
		"--service-account-private-key-file=" + creds.serviceAccountKey,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--v=1",
	}, p.exited)
	if err != nil {
		return p, err
	}
	if err := waitFor(ctx, p.exited, "the default ServiceAccount (kube-controller-manager)", func() bool {
		return getOK(server+"/api/v1/namespaces/default/serviceaccounts/default", creds)
	}); err != nil {
		return p, err
	}
	// The controller manager keeps reading the partial file: it is the same content.
	if err := writeKubeconfig(kubeconfig, server, creds); err != nil {
		return p, err
	}
	return p, nil
}

func (p *controlPlane) startEtcd(ctx context.Context, dir string) (string, error) {
	clientPort, err := freePort()
	if err != nil {
		return "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return "", err
	}
	clientURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	// Test data: durability across a machine crash is not wanted, speed is.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", fmt.Errorf("starting etcd: %w", err)
	}
	p.etcd = e
	select {
	case <-e.Server.ReadyNotify():
		return clientURL.String(), nil
	case err := <-e.Err():
		return "", fmt.Errorf("etcd: %w", err)
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for etcd: %w", context.Cause(ctx))
	}
}

// stop shuts the components down in reverse order of start.
func (p *controlPlane) stop() {
	if p.controllerManager != nil {
		p.controllerManager.stop(10 * time.Second)
	}
	if p.apiserver != nil {
		p.apiserver.stop(30 * time.Second)
	}
	if p.etcd != nil {
		p.etcd.Close()
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls ready every 100 ms until it is true, a component exits, or ctx ends.
func waitFor(ctx context.Context, exited <-chan string, what string, ready func() bool) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready() {
			return nil
		}
		select {
		case name := <-exited:
			return fmt.Errorf("%s exited while waiting for %s (see %s.log)", name, what, name)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// getOK is whether an admin GET of url answers 200.
func getOK(url string, creds *credentials) bool {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(creds.caPEM)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+creds.adminToken)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// writeKubeconfig writes the admin kubeconfig atomically (a reader never sees half of it).
func writeKubeconfig(path, server string, creds *credentials) error {
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-control-plane
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: kube-control-plane
  context:
    cluster: kube-control-plane
    user: %s
current-context: kube-control-plane
`, server, base64.StdEncoding.EncodeToString(creds.caPEM), adminUser, creds.adminToken, adminUser)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

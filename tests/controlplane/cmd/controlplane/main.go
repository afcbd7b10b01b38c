// Command controlplane starts a real etcd, a real kube-apiserver and a real
// kube-controller-manager on 127.0.0.1, and writes a kubeconfig for them: the parts of a
// cluster that act on API objects (garbage collection, namespace deletion, service
// accounts, EndpointSlice mirroring), without a scheduler or kubelets.
//
//	controlplane --bin-dir DIR [--dir WORKDIR] [--kubeconfig OUT] [--control-stdin]
//
// When all three are ready it prints one line to stdout:
//
//	ready kubeconfig=PATH server=URL dir=WORKDIR etcd=URL etcd-pid=N apiserver-pid=N controller-manager-pid=N
//
// It stops them (kube-controller-manager, then kube-apiserver, then etcd) on SIGTERM,
// SIGINT or SIGHUP, when its parent process dies, and, with --control-stdin, when stdin
// reaches EOF. With --control-stdin it also answers line commands on stdout:
// `stop-apiserver` -> `stopped`, `start-apiserver` -> `ready ...` (same port,
// certificates and token); the controller manager keeps running and reconnects.
//
// Only the standard library is used so that the launcher builds in seconds.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	etcdTimeout      = 60 * time.Second
	apiserverTimeout = 120 * time.Second
	// The controller manager is ready once its service-account controller has created
	// the `default` ServiceAccount, which needs its informers synced.
	controllerManagerTimeout = 120 * time.Second
	stopTimeout              = 15 * time.Second
	parentPoll               = 500 * time.Millisecond
)

func main() {
	binDir := flag.String("bin-dir", "", "directory holding the etcd, kube-apiserver and kube-controller-manager binaries (required)")
	workDir := flag.String("dir", "", "work directory to keep (default: a temporary one, removed on exit)")
	kubeconfig := flag.String("kubeconfig", "", "where to write the kubeconfig (default: WORKDIR/kubeconfig)")
	controlStdin := flag.Bool("control-stdin", false, "read stop-apiserver/start-apiserver commands from stdin; stop on EOF")
	flag.Parse()
	if *binDir == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	// A reader that went away must not kill us before we have stopped the children.
	signal.Ignore(syscall.SIGPIPE)
	if err := run(*binDir, *workDir, *kubeconfig, *controlStdin); err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "controlplane: "+format+"\n", args...)
}

// run starts the control plane, serves commands until told to stop, and stops it.
func run(binDir, workDir, kubeconfig string, controlStdin bool) (err error) {
	// Read first: a parent that dies during start-up must still be noticed.
	parent := os.Getppid()
	started := time.Now()

	binDir, err = filepath.Abs(binDir)
	if err != nil {
		return err
	}
	if workDir == "" {
		workDir, err = os.MkdirTemp("", "extsvc-controlplane-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(workDir)
	} else {
		if workDir, err = filepath.Abs(workDir); err != nil {
			return err
		}
		if err = os.MkdirAll(workDir, 0o755); err != nil {
			return err
		}
	}
	if kubeconfig == "" {
		kubeconfig = filepath.Join(workDir, "kubeconfig")
	}
	if kubeconfig, err = filepath.Abs(kubeconfig); err != nil {
		return err
	}

	cp, err := newControlPlane(binDir, workDir)
	if err != nil {
		return err
	}
	// Whatever happens from here on, no child outlives the launcher.
	defer cp.stopAll()

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer cancel()
	go watchParent(parent, cancel)

	if err := cp.startEtcd(ctx); err != nil {
		return err
	}
	if err := cp.startAPIServer(ctx); err != nil {
		return err
	}
	if err := cp.writeKubeconfig(kubeconfig, "admin", cp.token); err != nil {
		return err
	}
	if err := cp.startControllerManager(ctx); err != nil {
		return err
	}
	logf("ready in %.1fs", time.Since(started).Seconds())
	logf("  server      %s", cp.serverURL())
	logf("  kubeconfig  %s", kubeconfig)
	logf("  etcd        %s (data %s)", cp.etcdURL(), filepath.Join(workDir, "etcd"))
	logf("  logs        %s, %s, %s", cp.etcd.logPath, cp.apiserver.logPath, cp.controllerManager.logPath)
	logf("  try         %s --kubeconfig %s get namespaces", filepath.Join(binDir, "kubectl"), kubeconfig)
	cp.kubeconfig = kubeconfig
	cp.printReady()

	var commands <-chan string
	if controlStdin {
		commands = readLines(os.Stdin)
	}
	for {
		select {
		case <-ctx.Done():
			logf("stopping")
			return nil
		case <-cp.etcd.done:
			return fmt.Errorf("etcd exited unexpectedly (%v); see %s", cp.etcd.err, cp.etcd.logPath)
		case <-cp.apiserverDone():
			return fmt.Errorf("kube-apiserver exited unexpectedly (%v); see %s", cp.apiserver.err, cp.apiserver.logPath)
		case <-cp.controllerManager.done:
			return fmt.Errorf("kube-controller-manager exited unexpectedly (%v); see %s", cp.controllerManager.err, cp.controllerManager.logPath)
		case line, ok := <-commands:
			if !ok {
				logf("stdin closed; stopping")
				return nil
			}
			cp.command(ctx, strings.TrimSpace(line))
		}
	}
}

// watchParent cancels when the launcher's parent dies (we are re-parented). Pdeathsig on
// the launcher itself would fire when the parent *thread* that spawned it exits, which a
// threaded parent (a tokio blocking pool, a test harness) does routinely.
func watchParent(parent int, cancel func()) {
	for {
		if os.Getppid() != parent {
			logf("parent process %d died; stopping", parent)
			cancel()
			return
		}
		time.Sleep(parentPoll)
	}
}

func readLines(r io.Reader) <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(r)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	return lines
}

type controlPlane struct {
	binDir, workDir, kubeconfig string
	etcdPort, peerPort, apiPort int
	controllerManagerPort       int
	// token is the admin's (system:masters); controllerManagerToken authenticates the
	// controller manager as system:kube-controller-manager, whose bootstrap RBAC roles
	// let it mint a token per controller (--use-service-account-credentials).
	token, controllerManagerToken      string
	caPEM                              []byte
	caPool                             *x509.CertPool
	etcd, apiserver, controllerManager *child
}

func newControlPlane(binDir, workDir string) (*controlPlane, error) {
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found in --bin-dir (run tests/controlplane/build.sh): %w", b, err)
		}
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{
		binDir: binDir, workDir: workDir,
		etcdPort: ports[0], peerPort: ports[1], apiPort: ports[2], controllerManagerPort: ports[3],
	}
	if err := cp.writeCredentials(); err != nil {
		return nil, fmt.Errorf("writing certificates and keys: %w", err)
	}
	return cp, nil
}

// freePorts asks the kernel for n distinct free ports, holding them all until the end so
// that it cannot hand out the same one twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (cp *controlPlane) etcdURL() string   { return fmt.Sprintf("http://127.0.0.1:%d", cp.etcdPort) }
func (cp *controlPlane) serverURL() string { return fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort) }
func (cp *controlPlane) path(name string) string {
	return filepath.Join(cp.workDir, name)
}

func (cp *controlPlane) startEtcd(ctx context.Context) error {
	peer := fmt.Sprintf("http://127.0.0.1:%d", cp.peerPort)
	args := []string{
		"--name", "default",
		"--data-dir", cp.path("etcd"),
		"--listen-client-urls", cp.etcdURL(),
		"--advertise-client-urls", cp.etcdURL(),
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default=" + peer,
		// A throwaway store: durability costs seconds per test run on slow disks.
		"--unsafe-no-fsync",
	}
	c, err := startChild("etcd", filepath.Join(cp.binDir, "etcd"), args, cp.path("etcd.log"))
	if err != nil {
		return err
	}
	cp.etcd = c
	health := func(client *http.Client) bool {
		resp, err := client.Get(cp.etcdURL() + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`)
	}
	return waitFor(ctx, c, etcdTimeout, &http.Client{Timeout: 2 * time.Second}, health)
}

func (cp *controlPlane) startAPIServer(ctx context.Context) error {
	args := []string{
		"--etcd-servers", cp.etcdURL(),
		"--bind-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(cp.apiPort),
		"--cert-dir", cp.path("apiserver-certs"),
		"--tls-cert-file", cp.path("serving.crt"),
		"--tls-private-key-file", cp.path("serving.key"),
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--authorization-mode", "RBAC",
		"--service-account-issuer", cp.serverURL() + "/",
		"--service-account-key-file", cp.path("sa.pub"),
		"--service-account-signing-key-file", cp.path("sa.key"),
		"--token-auth-file", cp.path("tokens.csv"),
		// The default reconciler publishes the advertise address (127.0.0.1) as the
		// endpoint of the `kubernetes` Service, which validation rejects as loopback:
		// an error in the log every 10 s and nothing gained.
		"--endpoint-reconciler-type", "none",
	}
	c, err := startChild("kube-apiserver", filepath.Join(cp.binDir, "kube-apiserver"), args, cp.path("kube-apiserver.log"))
	if err != nil {
		return err
	}
	cp.apiserver = c
	client := cp.httpClient()
	ready := func(client *http.Client) bool {
		return cp.getOK(client, cp.serverURL()+"/readyz", cp.token)
	}
	err = waitFor(ctx, c, apiserverTimeout, client, ready)
	// An idle keep-alive connection would make a later graceful stop wait for it.
	client.CloseIdleConnections()
	return err
}

// startControllerManager starts kube-controller-manager with its default controllers
// (garbage collector, namespace, service account and token, EndpointSlice and its
// mirroring, ...), as its own user, and waits until it serves /healthz and its
// service-account controller has created the `default` ServiceAccount of `default`.
func (cp *controlPlane) startControllerManager(ctx context.Context) error {
	kubeconfig := cp.path("controller-manager.kubeconfig")
	if err := cp.writeKubeconfig(kubeconfig, "system:kube-controller-manager", cp.controllerManagerToken); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig", kubeconfig,
		// Delegated authentication and authorization of its own /healthz and /metrics.
		"--authentication-kubeconfig", kubeconfig,
		"--authorization-kubeconfig", kubeconfig,
		"--bind-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(cp.controllerManagerPort),
		// The API server's serving certificate is for 127.0.0.1 and signed by our CA.
		"--tls-cert-file", cp.path("serving.crt"),
		"--tls-private-key-file", cp.path("serving.key"),
		// One instance: no Lease to win, so it starts at once and writes no Lease.
		"--leader-elect=false",
		// Each controller acts as its own ServiceAccount in kube-system with the
		// bootstrap RBAC role of that controller, as kubeadm clusters run it.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", cp.path("sa.key"),
		"--root-ca-file", cp.path("ca.crt"),
		"--controllers", "*",
	}
	c, err := startChild("kube-controller-manager", filepath.Join(cp.binDir, "kube-controller-manager"), args, cp.path("kube-controller-manager.log"))
	if err != nil {
		return err
	}
	cp.controllerManager = c
	client := cp.httpClient()
	healthz := fmt.Sprintf("https://127.0.0.1:%d/healthz", cp.controllerManagerPort)
	defaultServiceAccount := cp.serverURL() + "/api/v1/namespaces/default/serviceaccounts/default"
	ready := func(client *http.Client) bool {
		return cp.getOK(client, healthz, "") && cp.getOK(client, defaultServiceAccount, cp.token)
	}
	err = waitFor(ctx, c, controllerManagerTimeout, client, ready)
	client.CloseIdleConnections()
	return err
}

// httpClient trusts our CA only.
func (cp *controlPlane) httpClient() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cp.caPool}},
	}
}

// getOK says whether GET url answers 200, with a bearer token unless it is empty.
func (cp *controlPlane) getOK(client *http.Client, url, token string) bool {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// waitFor polls ok until it holds, the child exits, the timeout passes or ctx ends.
func waitFor(ctx context.Context, c *child, timeout time.Duration, client *http.Client, ok func(*http.Client) bool) error {
	started := time.Now()
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok(client) {
			logf("%s ready after %.1fs (pid %d)", c.name, time.Since(started).Seconds(), c.cmd.Process.Pid)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while starting %s", c.name)
		case <-c.done:
			c.printLogTail()
			return fmt.Errorf("%s exited during start-up (%v); log: %s", c.name, c.err, c.logPath)
		case <-deadline:
			c.printLogTail()
			return fmt.Errorf("%s not ready after %s; log: %s", c.name, timeout, c.logPath)
		case <-tick.C:
		}
	}
}

// apiserverDone is the exit channel of a running kube-apiserver, or nil (never ready)
// while it is stopped on purpose.
func (cp *controlPlane) apiserverDone() <-chan struct{} {
	if cp.apiserver == nil {
		return nil
	}
	return cp.apiserver.done
}

func (cp *controlPlane) command(ctx context.Context, line string) {
	switch line {
	case "":
	case "stop-apiserver":
		if cp.apiserver != nil {
			cp.apiserver.stop()
			cp.apiserver = nil
		}
		fmt.Println("stopped")
	case "start-apiserver":
		if cp.apiserver != nil {
			fmt.Println("error kube-apiserver is already running")
			return
		}
		if err := cp.startAPIServer(ctx); err != nil {
			logf("%v", err)
			if cp.apiserver != nil {
				cp.apiserver.stop()
				cp.apiserver = nil
			}
			fmt.Printf("error %s\n", oneLine(err))
			return
		}
		cp.printReady()
	default:
		fmt.Printf("error unknown command %q (want stop-apiserver or start-apiserver)\n", line)
	}
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

func (cp *controlPlane) printReady() {
	fmt.Printf("ready kubeconfig=%s server=%s dir=%s etcd=%s etcd-pid=%d apiserver-pid=%d controller-manager-pid=%d\n",
		cp.kubeconfig, cp.serverURL(), cp.workDir, cp.etcdURL(), cp.etcd.cmd.Process.Pid, cp.apiserver.cmd.Process.Pid,
		cp.controllerManager.cmd.Process.Pid)
}

// stopAll stops each process before what it depends on, so that none spends its
// shutdown retrying a server that is gone.
func (cp *controlPlane) stopAll() {
	if cp.controllerManager != nil {
		cp.controllerManager.stop()
	}
	if cp.apiserver != nil {
		cp.apiserver.stop()
	}
	if cp.etcd != nil {
		cp.etcd.stop()
	}
}

// writeKubeconfig writes a kubeconfig for the API server that authenticates as user with
// token.
func (cp *controlPlane) writeKubeconfig(path, user, token string) error {
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: extsvc-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %[3]s
  user:
    token: %[4]s
contexts:
- name: extsvc-test
  context:
    cluster: extsvc-test
    user: %[3]s
current-context: extsvc-test
`, cp.serverURL(), base64.StdEncoding.EncodeToString(cp.caPEM), user, token)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// Write then rename: a reader never sees half a kubeconfig.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(kubeconfig), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeCredentials creates a CA, a serving certificate it signs, a service-account key
// pair and an admin token. The kubeconfig names the CA rather than the serving
// certificate because rustls rejects a leaf used as its own trust anchor.
func (cp *controlPlane) writeCredentials() error {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "extsvc-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}

	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}, caCert, &servingKey.PublicKey, caKey)
	if err != nil {
		return err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}

	if cp.token, err = randomToken(); err != nil {
		return err
	}
	if cp.controllerManagerToken, err = randomToken(); err != nil {
		return err
	}
	cp.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	cp.caPool = x509.NewCertPool()
	cp.caPool.AddCert(caCert)

	servingKeyPEM, err := ecKeyPEM(servingKey)
	if err != nil {
		return err
	}
	saKeyPEM, err := ecKeyPEM(saKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.crt":      cp.caPEM,
		"serving.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: servingDER}),
		"serving.key": servingKeyPEM,
		"sa.key":      saKeyPEM,
		"sa.pub":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv": fmt.Appendf(nil, "%s,admin,admin-uid,\"system:masters\"\n%s,system:kube-controller-manager,kube-controller-manager-uid\n",
			cp.token, cp.controllerManagerToken),
	}
	for name, data := range files {
		if err := os.WriteFile(cp.path(name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func randomToken() (string, error) {
	token := make([]byte, 24)
	if _, err := rand.Read(token); err != nil {
		return "", err
	}
	return hex.EncodeToString(token), nil
}

func ecKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// child is one started process; done closes when it has exited and err is set.
type child struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{}
	err           error
}

func startChild(name, bin string, args []string, logPath string) (*child, error) {
	// Append: a restarted kube-apiserver keeps the log of its earlier runs.
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "\n=== %s %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// The kernel kills the child if the launcher dies without stopping it (SIGKILL).
		Pdeathsig: syscall.SIGKILL,
		// Its own process group: a Ctrl-C in a terminal reaches only the launcher, which
		// then stops the children in order.
		Setpgid: true,
	}
	if err := spawn(cmd); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	logf("started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	go func() {
		c.err = cmd.Wait()
		log.Close()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM to the child's process group and SIGKILL if it lingers.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	started := time.Now()
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		logf("%s did not stop within %s; killing it", c.name, stopTimeout)
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	logf("stopped %s in %.1fs", c.name, time.Since(started).Seconds())
}

func (c *child) printLogTail() {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	logf("last lines of %s:", c.logPath)
	for _, l := range lines {
		fmt.Fprintf(os.Stderr, "    %s\n", l)
	}
}

// Pdeathsig fires when the *thread* that forked the child exits, and the Go runtime may
// retire threads. All children are therefore forked from one goroutine locked to its
// thread for the life of the process.
var spawns = make(chan spawnRequest)

type spawnRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

func init() {
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as we do
		for req := range spawns {
			req.errc <- req.cmd.Start()
		}
	}()
}

func spawn(cmd *exec.Cmd) error {
	errc := make(chan error)
	spawns <- spawnRequest{cmd: cmd, errc: errc}
	return <-errc
}

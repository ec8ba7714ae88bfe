package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with common name cn to certFile and
// keyFile (each replaced by a rename, as rotation tools do) and returns it.
func writeCert(t *testing.T, cn, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	replace := func(path, typ string, der []byte) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	// The key first: for a moment the pair does not match, which the gateway must ride out.
	replace(keyFile, "PRIVATE KEY", keyDER)
	replace(certFile, "CERTIFICATE", der)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestTLSWithRotation: with server.tls set, the gateway serves HTTPS with HTTP/2; a push over
// it is accepted; certificate files replaced while it runs are served from the next handshake
// on, without a restart.
func TestTLSWithRotation(t *testing.T) {
	cfgPath, _ := copyExample(t)
	dir := filepath.Dir(cfgPath)
	certFile, keyFile := filepath.Join(dir, "tls", "gw.crt"), filepath.Join(dir, "tls", "gw.key")
	if err := os.Mkdir(filepath.Dir(certFile), 0o700); err != nil {
		t.Fatal(err)
	}
	first := writeCert(t, "gateway-1", certFile, keyFile)
	editConfig(t, cfgPath, "server:\n", "server:\n  tls: {cert_file: tls/gw.crt, key_file: tls/gw.key}\n") // relative to the config
	g := startGateway(t, cfgPath, t.TempDir())
	if !strings.HasPrefix(g.URL, "https://") {
		t.Fatalf("listening at %s", g.URL)
	}

	roots := x509.NewCertPool()
	roots.AddCert(first)
	// A fresh client per call: every call is a new TLS handshake.
	push := func(roots *x509.CertPool) (*http.Response, error) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, g.URL+"/push", strings.NewReader(`{"format":"activity","payload":[{"id":"tls-1","type":"quote"}]}`))
		req.SetBasicAuth("demo", "demo-secret")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	resp, err := push(roots)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted || resp.ProtoMajor != 2 || resp.TLS.PeerCertificates[0].Subject.CommonName != "gateway-1" {
		t.Fatalf("push over TLS: %d %s, certificate %q", resp.StatusCode, resp.Proto, resp.TLS.PeerCertificates[0].Subject.CommonName)
	}

	second := writeCert(t, "gateway-2", certFile, keyFile)
	roots.AddCert(second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err = push(roots)
		if err == nil && resp.TLS.PeerCertificates[0].Subject.CommonName == "gateway-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate is not served: %v\n%s", err, g.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("push after rotation: %d", resp.StatusCode)
	}
	// A client that trusts only the old certificate is now refused.
	only := x509.NewCertPool()
	only.AddCert(first)
	if _, err := push(only); err == nil {
		t.Error("the old certificate is still served")
	}
	if !strings.Contains(g.logs.String(), "TLS certificate reloaded") {
		t.Errorf("no reload logged:\n%s", g.logs.String())
	}
}

// TestTLSBadCertificateFailsStart: a certificate that does not load stops the start with a
// message naming the files.
func TestTLSBadCertificateFailsStart(t *testing.T) {
	cfgPath, _ := copyExample(t)
	dir := filepath.Dir(cfgPath)
	writeTree(t, dir, map[string]string{"gw.crt": "not a certificate", "gw.key": "not a key"})
	editConfig(t, cfgPath, "server:\n", "server:\n  tls: {cert_file: gw.crt, key_file: gw.key}\n")
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"serve", "--config", cfgPath, "--addr", "127.0.0.1:0", "--data", t.TempDir()},
		func(string) string { return "" }, strings.NewReader(""), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "server.tls: load "+filepath.Join(dir, "gw.crt")) {
		t.Fatalf("err = %v", err)
	}
}

// TestDataFolderIsOwnerOnly: the data folder is 0700 (also one that existed 0755) and every
// file the gateway writes in it is 0600.
func TestDataFolderIsOwnerOnly(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, exampleConfig, data)
	id := g.push(t, []byte(`{"format":"activity","payload":[{"id":"m1","type":"quote","timestamp":"2020-05-18T21:20:00Z","user_email":"a@b","contact":"c","product_line":"fire","product":"p","amount":1}]}`))
	g.waitComplete(t, id, 30*time.Second)
	var files []string
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		files = append(files, d.Name())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gateway.db", "gateway.db-wal", "sinks.db", "sinks.db-wal", "jwt.key", "gateway.lock"} {
		if !strings.Contains(strings.Join(files, " "), name) {
			t.Errorf("%s was not checked (files: %v)", name, files)
		}
	}
}

// TestLimitsFromConfig: limits and rate limits set in gateway.yaml reach the HTTP interface.
func TestLimitsFromConfig(t *testing.T) {
	cfgPath, _ := copyExample(t)
	editConfig(t, cfgPath, "  max_depth: 64 ", "  max_depth: 6 ")
	editRegexp(t, cfgPath, `(?m)^(    )rate_limit: \{requests_per_second: 20000.*$`, "${1}rate_limit: {requests_per_second: 0.01, burst: 3}")
	g := startGateway(t, cfgPath, t.TempDir())

	deep := `{"format":"activity","payload":[{"id":"d","type":"call","x":{"a":{"b":{"c":{"d":1}}}}}]}`
	status, _, out := g.do(t, "POST", "/push", "demo", "demo-secret", "application/json", []byte(deep))
	if status != http.StatusBadRequest || !strings.Contains(gjson.GetBytes(out, "message").String(), "payload[0] is nested deeper than the limit of 6 levels") {
		t.Errorf("deep push: %d %s", status, out)
	}
	for range 2 {
		g.do(t, "POST", "/tracking", "demo", "demo-secret", "application/json", []byte(`{}`))
	}
	status, h, out := g.do(t, "POST", "/tracking", "demo", "demo-secret", "application/json", []byte(`{}`))
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" ||
		!strings.Contains(gjson.GetBytes(out, "message").String(), "rate limit of 0.01 requests per second (burst 3)") {
		t.Errorf("over the rate limit: %d Retry-After=%q %s", status, h.Get("Retry-After"), out)
	}
	if status, _, out := g.do(t, "GET", "/.well-known/oauth-authorization-server", "", "", "", nil); status != http.StatusOK ||
		gjson.GetBytes(out, "token_endpoint").String() != g.URL+"/connect/token" {
		t.Errorf("OAuth metadata: %d %s", status, out)
	}
}

// editConfig replaces the first old in the config file with new.
func editConfig(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// editRegexp replaces every match of pattern in the config file.
func editRegexp(t *testing.T, path, pattern, repl string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(pattern)
	if !re.Match(b) {
		t.Fatalf("%s does not match %s", path, pattern)
	}
	if err := os.WriteFile(path, re.ReplaceAll(b, []byte(repl)), 0o600); err != nil {
		t.Fatal(err)
	}
}

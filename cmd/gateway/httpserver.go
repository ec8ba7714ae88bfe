package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/opengw/gateway/internal/config"
)

// newHTTPServer builds the gateway's HTTP server from the server: section: timeouts and header
// limit (so a slow or stalled client cannot hold a connection for ever), HTTP/1.1 and HTTP/2,
// and, when tls.cert_file and key_file are set, TLS with certificates re-read when their files
// change. The files must load now: a bad certificate fails the start, not the first handshake.
func newHTTPServer(cfg *config.Config, h http.Handler, log *slog.Logger) (*http.Server, error) {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		Protocols:         protocols,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if certFile, keyFile := cfg.TLSFiles(); certFile != "" {
		certs, err := newCertReloader(certFile, keyFile, log)
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
	}
	return srv, nil
}

// serveHTTP serves srv on ln, over TLS when srv has a TLS configuration. It returns as
// http.Server.Serve does.
func serveHTTP(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// urlScheme is how clients reach srv: https or http.
func urlScheme(srv *http.Server) string {
	if srv.TLSConfig != nil {
		return "https"
	}
	return "http"
}

// certReloader serves the certificate pair in certFile and keyFile, and re-reads both when
// either file's modification time or size changes, so a rotated certificate is served from the
// next handshake on, without a restart. A pair that does not load (a key not yet written to
// match its new certificate, say) is logged and the previous pair kept until the files change
// again. It is safe for concurrent use.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.Mutex
	cert  *tls.Certificate
	tried pairStamp // of the files last loaded or tried
}

// pairStamp identifies one version of the two files.
type pairStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := c.stamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server.tls: load %s and %s: %w", certFile, keyFile, err)
	}
	c.cert, c.tried = &cert, stamp
	return c, nil
}

// GetCertificate is tls.Config.GetCertificate: the current pair, re-read first if the files
// changed.
func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamp, err := c.stamp()
	if err != nil || stamp == c.tried {
		return c.cert, nil // a file briefly missing during a rotation: keep serving
	}
	c.tried = stamp
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.log.Warn("TLS certificate files changed but do not load; still serving the previous certificate",
			"cert_file", c.certFile, "key_file", c.keyFile, "err", err)
		return c.cert, nil
	}
	c.cert = &cert
	c.log.Info("TLS certificate reloaded", "cert_file", c.certFile)
	return c.cert, nil
}

func (c *certReloader) stamp() (pairStamp, error) {
	ci, err := os.Stat(c.certFile)
	if err != nil {
		return pairStamp{}, fmt.Errorf("server.tls.cert_file: %w", err)
	}
	ki, err := os.Stat(c.keyFile)
	if err != nil {
		return pairStamp{}, fmt.Errorf("server.tls.key_file: %w", err)
	}
	return pairStamp{certMod: ci.ModTime(), keyMod: ki.ModTime(), certSize: ci.Size(), keySize: ki.Size()}, nil
}

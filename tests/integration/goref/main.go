// The reference for test_160_go_query.py: Go's own net/http/pprof, as a Go 1.19 program
// serves it, on a free loopback port. Apache's Timeout plays Go's WriteTimeout, so the
// server takes the same -timeout. It prints "port N" once it listens; the server's own
// log (the semicolon warning of Go 1.17+) goes to stderr.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"time"
)

func main() {
	timeout := flag.Int("timeout", 60, "WriteTimeout in seconds")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	srv := &http.Server{
		WriteTimeout: time.Duration(*timeout) * time.Second,
		ErrorLog:     log.New(os.Stderr, "", 0),
	}
	log.Fatal(srv.Serve(ln))
}

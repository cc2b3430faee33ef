// Command tcpecho is a sample of opaque TCP for the mesh: `tcpecho echo`
// echoes every line back, and `tcpecho greet` is server-first, like SMTP or
// MySQL: it greets the client as soon as it connects, then echoes. It
// listens on --port (or PORT), default 9000. With --prefix P each echoed
// line starts with "P " (as Istio's tcp-echo sample answers "one ..." or
// "two ...", which shows which version answered).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// Greeting is what `tcpecho greet` sends first.
const Greeting = "220 weft greeter ready\r\n"

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "echo" && os.Args[1] != "greet") {
		fmt.Fprintln(os.Stderr, "usage: tcpecho echo|greet [--port N]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet("tcpecho "+mode, flag.ExitOnError)
	port := 9000
	if p, err := strconv.Atoi(os.Getenv("PORT")); err == nil {
		port = p
	}
	fs.IntVar(&port, "port", port, "port to listen on")
	prefix := fs.String("prefix", "", "`word` to start each echoed line with, followed by a space")
	fs.Parse(os.Args[2:])
	if *prefix != "" {
		*prefix += " "
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	log.Info("serving", "mode", mode, "addr", l.Addr().String())
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("accept", "err", err)
			continue
		}
		go serve(c, mode == "greet", *prefix)
	}
}

func serve(c net.Conn, greet bool, prefix string) {
	defer c.Close()
	if greet {
		if _, err := c.Write([]byte(Greeting)); err != nil {
			return
		}
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			if _, werr := c.Write([]byte(prefix + line)); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Package cli implements the weft command: the control plane (weft control),
// the local mesh (weft up, weft down) and the commands that read and write
// configuration (weft apply, get, delete) and show what proxies were sent
// (weft proxy-status, proxy-config).
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// globals are the flags every command takes.
type globals struct {
	dataDir string
	server  string // control plane API address; empty means read it from dataDir
	verbose bool
	stdout  io.Writer
	stderr  io.Writer
}

// DefaultDataDir is where weft keeps its state unless --data-dir says otherwise.
func DefaultDataDir() string {
	if d := os.Getenv("WEFT_DATA_DIR"); d != "" {
		return d
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".weft")
	}
	return ".weft"
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
}

// exitError carries an exit code through cobra without printing twice.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs weft with the given arguments and returns the process exit code.
func Main(args []string) int {
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "weft",
		Short:         "Weft is a service mesh that speaks Istio's API and runs on a laptop",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", DefaultDataDir(), "directory for the config store and local mesh state")
	pf.StringVar(&g.server, "server", "", "control plane API address (default: the one recorded in --data-dir)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log debug detail")
	for _, add := range commands {
		root.AddCommand(add(g))
	}
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

// commands holds the constructors of weft's subcommands; each file that
// defines a command appends to it in an init function.
var commands []func(*globals) *cobra.Command

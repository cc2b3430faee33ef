package iptables

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// env is what Main needs from the process, replaceable in tests.
type env struct {
	stdout, stderr io.Writer
	geteuid        func() int
	runner         Runner
}

// Main is `weft-proxy iptables [flags]`: it installs (or with --cleanup
// removes, or with --dry-run prints) the capture rules in the current
// network namespace, and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return run(args, env{stdout: stdout, stderr: stderr, geteuid: os.Geteuid, runner: ExecRunner{}})
}

// cliFlags are the parsed flags.
type cliFlags struct {
	opts     Options
	dryRun   bool
	cleanup  bool
	logLevel slog.Level
}

// rawFlags are the flags as typed, before validation.
type rawFlags struct {
	uids, gids, inInclude, inExclude, outExclude, cidrInclude, cidrExclude, level string
	mark, outPort, inPort, dnsPort                                                uint
}

func parseFlags(args []string, stderr io.Writer) (*cliFlags, error) {
	fs := flag.NewFlagSet("weft-proxy iptables", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: weft-proxy iptables [flags]\n\n"+
			"Installs the nat rules that send this network namespace's TCP traffic\n"+
			"through the sidecar: outbound to --outbound-port, inbound to --inbound-port,\n"+
			"except the proxy's own traffic and loopback (the equivalent of istio-init).\n"+
			"Running it again replaces Weft's rules; other rules are never touched.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		c cliFlags
		r rawFlags
	)
	fs.StringVar(&r.uids, "proxy-uid", "1337", "`uids` (comma-separated) whose traffic is not captured: the proxy's")
	fs.StringVar(&r.gids, "proxy-gid", "1337", "`gids` (comma-separated) whose traffic is not captured")
	fs.UintVar(&r.mark, "proxy-mark", 0, "packet `mark` whose traffic is not captured (0: none)")
	fs.UintVar(&r.outPort, "outbound-port", DefaultOutboundPort, "`port` outbound TCP is redirected to")
	fs.UintVar(&r.inPort, "inbound-port", DefaultInboundPort, "`port` inbound TCP is redirected to")
	fs.BoolVar(&c.opts.CaptureDNS, "capture-dns", false, "redirect DNS (UDP and TCP port 53) to the DNS proxy on loopback")
	fs.UintVar(&r.dnsPort, "dns-port", DefaultDNSPort, "DNS proxy `port` for --capture-dns")
	fs.StringVar(&r.inInclude, "inbound-ports-include", "*", "inbound `ports` to capture (comma-separated); * for all, empty for none")
	fs.StringVar(&r.inExclude, "inbound-ports-exclude", "", "inbound `ports` not to capture, with --inbound-ports-include '*'")
	fs.StringVar(&r.outExclude, "outbound-ports-exclude", "", "outbound destination `ports` not to capture")
	fs.StringVar(&r.cidrInclude, "outbound-cidrs-include", "*", "outbound destination `CIDRs` to capture; * for all, empty for none")
	fs.StringVar(&r.cidrExclude, "outbound-cidrs-exclude", "", "outbound destination `CIDRs` not to capture")
	fs.BoolVar(&c.opts.IPv6, "ipv6", false, "also install IPv6 rules with ip6tables")
	fs.BoolVar(&c.dryRun, "dry-run", false, "print the rules (iptables-restore input) instead of installing them")
	fs.BoolVar(&c.cleanup, "cleanup", false, "remove Weft's chains and the jumps to them, then exit")
	fs.StringVar(&r.level, "log-level", "info", "log `level`: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return nil, err // the flag package has printed it
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
		fmt.Fprintf(stderr, "weft-proxy iptables: %v\n", err)
		return nil, err
	}
	if err := c.fill(r); err != nil {
		fmt.Fprintf(stderr, "weft-proxy iptables: %v\n", err)
		return nil, err
	}
	return &c, nil
}

// fill validates the raw flags and fills c.
func (c *cliFlags) fill(r rawFlags) error {
	var err error
	o := &c.opts
	if o.ProxyUIDs, err = parseIDs(r.uids); err != nil {
		return fmt.Errorf("--proxy-uid: %w", err)
	}
	if o.ProxyGIDs, err = parseIDs(r.gids); err != nil {
		return fmt.Errorf("--proxy-gid: %w", err)
	}
	if r.mark > 1<<32-1 {
		return fmt.Errorf("--proxy-mark %d: want a 32-bit mark", r.mark)
	}
	o.ProxyMark = uint32(r.mark)
	if len(o.ProxyUIDs) == 0 && len(o.ProxyGIDs) == 0 && o.ProxyMark == 0 {
		return errors.New("--proxy-uid, --proxy-gid and --proxy-mark are all empty: the proxy's own traffic would loop back into it")
	}
	for _, p := range []struct {
		name string
		v    uint
		dst  *uint16
	}{{"--outbound-port", r.outPort, &o.OutboundPort}, {"--inbound-port", r.inPort, &o.InboundPort}, {"--dns-port", r.dnsPort, &o.DNSPort}} {
		if p.v == 0 || p.v > 65535 {
			return fmt.Errorf("%s %d: want a port number (1-65535)", p.name, p.v)
		}
		*p.dst = uint16(p.v)
	}
	switch strings.TrimSpace(r.inInclude) {
	case "*":
	case "":
		o.DisableInbound = true
	default:
		if o.InboundPortsInclude, err = parsePorts(r.inInclude); err != nil {
			return fmt.Errorf("--inbound-ports-include: %w", err)
		}
	}
	if o.InboundPortsExclude, err = parsePorts(r.inExclude); err != nil {
		return fmt.Errorf("--inbound-ports-exclude: %w", err)
	}
	if len(o.InboundPortsExclude) > 0 && (o.DisableInbound || len(o.InboundPortsInclude) > 0) {
		return errors.New("--inbound-ports-exclude only applies with --inbound-ports-include '*'")
	}
	if o.OutboundPortsExclude, err = parsePorts(r.outExclude); err != nil {
		return fmt.Errorf("--outbound-ports-exclude: %w", err)
	}
	switch strings.TrimSpace(r.cidrInclude) {
	case "*":
	case "":
		o.DisableOutbound = true
	default:
		if o.OutboundCIDRsInclude, err = parseCIDRs(r.cidrInclude); err != nil {
			return fmt.Errorf("--outbound-cidrs-include: %w", err)
		}
	}
	if o.OutboundCIDRsExclude, err = parseCIDRs(r.cidrExclude); err != nil {
		return fmt.Errorf("--outbound-cidrs-exclude: %w", err)
	}
	if err := c.logLevel.UnmarshalText([]byte(r.level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", r.level)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseIDs(s string) ([]uint32, error) {
	var out []uint32
	for _, f := range splitList(s) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a numeric id", f)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

func parsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range splitList(s) {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port number (1-65535)", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

func parseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitList(s) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8) or an IP address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func run(args []string, e env) int {
	c, err := parseFlags(args, e.stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rules := Build(c.opts)
	if c.dryRun {
		if c.cleanup {
			fmt.Fprintf(e.stdout, "# --cleanup removes every chain named %s* from the nat table and every jump to one.\n", ChainPrefix)
			return 0
		}
		fmt.Fprint(e.stdout, rules.String())
		return 0
	}
	if e.geteuid() != 0 {
		fmt.Fprintln(e.stderr, "weft-proxy iptables: must run as root: it changes this network namespace's iptables rules (use --dry-run to only print them)")
		return 1
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: c.logLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a := NewApplier(ApplierOptions{Runner: e.runner, Logger: log})
	if c.cleanup {
		err = a.Cleanup(ctx)
	} else {
		err = a.Apply(ctx, rules)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "weft-proxy iptables: %v\n", err)
		return 1
	}
	return 0
}

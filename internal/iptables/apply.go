package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
)

// Runner runs the iptables binaries. ExecRunner is the real one; tests
// substitute a fake.
type Runner interface {
	// LookPath returns the binary's path with symlinks resolved, or an
	// error when it is not installed.
	LookPath(name string) (string, error)
	// Run runs the binary with stdin and returns its standard output; on
	// failure the error includes its standard error.
	Run(ctx context.Context, stdin, name string, args ...string) (string, error)
}

// ExecRunner runs binaries from $PATH.
type ExecRunner struct{}

var _ Runner = ExecRunner{}

// LookPath implements Runner.
func (ExecRunner) LookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r, nil
	}
	return p, nil
}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			return out.String(), fmt.Errorf("%s: %w", name, err)
		}
		return out.String(), fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return out.String(), nil
}

// Family is an address family.
type Family int

// The address families.
const (
	IPv4 Family = iota
	IPv6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Variant is one flavour of the iptables tools.
type Variant struct {
	// Name is "nft", "legacy", or "" for the plain binaries, whichever
	// backend they use.
	Name    string
	Save    string // e.g. iptables-nft-save
	Restore string // e.g. iptables-nft-restore
	path    string // Save with symlinks resolved, to spot duplicates
}

func (v Variant) String() string { return strings.TrimSuffix(v.Save, "-save") }

// variants lists the candidates in order of preference.
func variants(f Family) []Variant {
	base := "iptables"
	if f == IPv6 {
		base = "ip6tables"
	}
	var out []Variant
	for _, name := range []string{"nft", "legacy", ""} {
		b := base
		if name != "" {
			b += "-" + name
		}
		out = append(out, Variant{Name: name, Save: b + "-save", Restore: b + "-restore"})
	}
	return out
}

// ErrNoIPTables means no iptables binary is installed or none runs.
var ErrNoIPTables = errors.New("no usable iptables: install iptables (e.g. apt-get install iptables)")

// usable is a variant whose save binary runs, with what it printed.
type usable struct {
	Variant
	saved  string
	system bool // the plain binary is this one (or links to it)
}

// probe returns every installed variant whose save binary runs,
// without duplicates (plain iptables is usually a link to one of the
// others), and why the others cannot.
func probe(ctx context.Context, r Runner, f Family) ([]usable, []string) {
	var out []usable
	var why []string
	seen := map[string]bool{}
	for _, v := range variants(f) {
		p, err := r.LookPath(v.Save)
		if err != nil {
			why = append(why, v.Save+": not installed")
			continue
		}
		if _, err := r.LookPath(v.Restore); err != nil {
			why = append(why, v.Restore+": not installed")
			continue
		}
		if seen[p] {
			if v.Name == "" {
				for i := range out {
					out[i].system = out[i].system || out[i].path == p
				}
			}
			continue
		}
		// Without -t, save dumps only the tables that exist: asking for
		// nat would make the legacy backend create its table.
		saved, err := r.Run(ctx, "", v.Save)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		seen[p] = true
		v.path = p
		out = append(out, usable{Variant: v, saved: saved, system: v.Name == ""})
	}
	return out, why
}

// hasRules says whether saved has any rule, and whether any is Weft's.
func hasRules(saved string) (some, weft bool) {
	for _, line := range strings.Split(saved, "\n") {
		if strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, ":"+ChainPrefix) {
			some = true
			if strings.Contains(line, ChainPrefix) {
				weft = true
			}
		}
	}
	return some, weft
}

// choose picks the variant to install rules with: the one that already has
// Weft's rules, else the one that has any rules (the backend in use), else
// the one plain iptables is (the system's choice), else the first usable one.
func choose(us []usable) usable {
	for _, u := range us {
		if _, weft := hasRules(u.saved); weft {
			return u
		}
	}
	for _, u := range us {
		if some, _ := hasRules(u.saved); some {
			return u
		}
	}
	for _, u := range us {
		if u.system {
			return u
		}
	}
	return us[0]
}

// Detect returns the variant Apply would use for family f, and what its
// save binary printed.
func Detect(ctx context.Context, r Runner, f Family) (Variant, string, error) {
	us, why := probe(ctx, r, f)
	if len(us) == 0 {
		return Variant{}, "", fmt.Errorf("%s: %w (%s)", f, ErrNoIPTables, strings.Join(why, "; "))
	}
	u := choose(us)
	return u.Variant, u.saved, nil
}

// ApplierOptions configure an Applier.
type ApplierOptions struct {
	// Runner runs the binaries; nil means ExecRunner.
	Runner Runner
	Logger *slog.Logger
}

// Applier installs and removes Rules in the current network namespace.
type Applier struct {
	r   Runner
	log *slog.Logger
}

// NewApplier returns an Applier.
func NewApplier(o ApplierOptions) *Applier {
	if o.Runner == nil {
		o.Runner = ExecRunner{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Applier{r: o.Runner, log: o.Logger}
}

// Apply installs rules, replacing whatever Weft installed before and
// leaving everything else alone. Without IPv6 rules it removes Weft's
// IPv6 rules, if ip6tables is usable.
func (a *Applier) Apply(ctx context.Context, rules Rules) error {
	if err := a.applyFamily(ctx, IPv4, rules.IPv4); err != nil {
		return err
	}
	if rules.IPv6 != nil {
		return a.applyFamily(ctx, IPv6, *rules.IPv6)
	}
	return a.cleanupFamily(ctx, IPv6, true)
}

func (a *Applier) applyFamily(ctx context.Context, f Family, rs Ruleset) error {
	v, saved, err := Detect(ctx, a.r, f)
	if err != nil {
		return err
	}
	if err := a.restore(ctx, f, v, Plan(saved, rs)); err != nil {
		return err
	}
	a.log.Info("installed capture rules", "family", f.String(), "iptables", v.String(), "rules", len(rs.Rules))
	return nil
}

// Cleanup removes Weft's chains and the jumps to them, for both families,
// with every variant that has them.
func (a *Applier) Cleanup(ctx context.Context) error {
	if err := a.cleanupFamily(ctx, IPv4, false); err != nil {
		return err
	}
	return a.cleanupFamily(ctx, IPv6, true)
}

// cleanupFamily removes Weft's rules from every variant that has them;
// with optional, having no usable iptables for f is not an error.
func (a *Applier) cleanupFamily(ctx context.Context, f Family, optional bool) error {
	us, why := probe(ctx, a.r, f)
	if len(us) == 0 {
		if optional {
			return nil
		}
		return fmt.Errorf("%s: %w (%s)", f, ErrNoIPTables, strings.Join(why, "; "))
	}
	for _, u := range us {
		if _, weft := hasRules(u.saved); !weft {
			continue
		}
		if err := a.restore(ctx, f, u.Variant, Plan(u.saved, Ruleset{})); err != nil {
			return err
		}
		a.log.Info("removed capture rules", "family", f.String(), "iptables", u.Variant.String())
	}
	return nil
}

func (a *Applier) restore(ctx context.Context, f Family, v Variant, input string) error {
	if input == "" {
		return nil
	}
	a.log.Debug("iptables-restore input", "family", f.String(), "iptables", v.String(), "input", input)
	if _, err := a.r.Run(ctx, input, v.Restore, "--noflush", "--wait"); err != nil {
		if strings.Contains(err.Error(), "ermission denied") {
			return fmt.Errorf("%s rules: %w (changing iptables needs root, or CAP_NET_ADMIN)", f, err)
		}
		return fmt.Errorf("%s rules with %s: %w", f, v.Restore, err)
	}
	return nil
}

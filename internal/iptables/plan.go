package iptables

import (
	"slices"
	"strings"
)

// Plan returns the `iptables-restore --noflush` input that turns the nat
// table described by saved (the output of `iptables-save -t nat`) into one
// holding exactly desired's chains and rules, leaving every rule and chain
// that is not Weft's untouched: it flushes Weft's chains (every chain named
// WEFT_*), deletes the jumps to them from other chains, deletes Weft's
// chains that desired no longer has, and appends desired's rules. With an
// empty desired it removes everything Weft installed. It returns "" when
// there is nothing to do.
func Plan(saved string, desired Ruleset) string {
	existing, jumps := parseNat(saved)
	ours := slices.Clone(desired.Chains)
	for _, c := range existing {
		if strings.HasPrefix(c, ChainPrefix) && !slices.Contains(ours, c) {
			ours = append(ours, c)
		}
	}
	if len(ours) == 0 && len(jumps) == 0 && len(desired.Rules) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	// A chain line flushes the chain if it exists and creates it if not.
	for _, c := range ours {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, j := range jumps {
		b.WriteString("-D" + strings.TrimPrefix(j, "-A") + "\n")
	}
	for _, c := range ours {
		if !slices.Contains(desired.Chains, c) {
			b.WriteString("-X " + c + "\n")
		}
	}
	for _, r := range desired.Rules {
		b.WriteString(r.String() + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// parseNat reads the nat table of iptables-save output: the names of its
// chains, and the rules of chains that are not Weft's that jump to one
// that is (as printed, starting with "-A").
func parseNat(saved string) (chains, jumps []string) {
	inNat := false
	for _, line := range strings.Split(saved, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			inNat = line == "*nat"
		case !inNat:
		case line == "COMMIT":
			inNat = false
		case strings.HasPrefix(line, ":"):
			if name, _, _ := strings.Cut(line[1:], " "); name != "" {
				chains = append(chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[1], ChainPrefix) {
				continue
			}
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g" || f[i] == "--jump" || f[i] == "--goto") && strings.HasPrefix(f[i+1], ChainPrefix) {
					jumps = append(jumps, line)
					break
				}
			}
		}
	}
	return chains, jumps
}

package harness

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what the harness reads from /proc/PID/stat.
type procStat struct {
	PPID  int
	Ticks uint64 // utime + stime
}

// parseStat parses the contents of /proc/PID/stat. The command name (field
// 2) is in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc stat: no ')' in %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("parse /proc stat: %d fields after the command, want at least 13", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat: ppid %q: %w", f[1], err)
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat: utime %q: %w", f[11], err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat: stime %q: %w", f[12], err)
	}
	return procStat{PPID: ppid, Ticks: ut + st}, nil
}

// parseVmRSS returns VmRSS from the contents of /proc/PID/status, in bytes.
func parseVmRSS(b []byte) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse /proc status: VmRSS line %q: want \"N kB\"", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc status: VmRSS %q: %w", f[0], err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("parse /proc status: no VmRSS line (a zombie or kernel thread?)")
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// withChildren returns pid and every live descendant of it (nginx and
// HAProxy workers), found by scanning /proc for parent links.
func withChildren(pid int) []int {
	parent := map[int]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil {
			parent[p] = st.PPID
		}
	}
	in := map[int]bool{pid: true}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if in[pp] && !in[p] {
				in[p] = true
				changed = true
			}
		}
	}
	out := make([]int, 0, len(in))
	for p := range in {
		out = append(out, p)
	}
	return out
}

// cpuSeconds is the CPU time (user+system) used so far by pid and its
// descendants.
func cpuSeconds(pid int) float64 {
	var ticks uint64
	for _, p := range withChildren(pid) {
		if st, err := readStat(p); err == nil {
			ticks += st.Ticks
		}
	}
	return float64(ticks) / clockTicks
}

// rssBytes is the summed VmRSS of pid and its descendants.
func rssBytes(pid int) int64 {
	var sum int64
	for _, p := range withChildren(pid) {
		if r, err := readRSS(p); err == nil {
			sum += r
		}
	}
	return sum
}

// cpuTimes is the machine's CPU time from the first line of /proc/stat,
// in ticks: all of it, and the part spent idle (idle and iowait).
type cpuTimes struct{ total, idle uint64 }

// parseCPUTimes parses the "cpu" line that /proc/stat starts with: user,
// nice, system, idle, iowait, irq, softirq, steal (guest time is counted
// in user already, so the fields after steal are left out).
func parseCPUTimes(b []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("parse /proc/stat: first line %q: want \"cpu\" and at least 8 counters", line)
	}
	var t cpuTimes
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("parse /proc/stat: counter %d %q: %w", i+1, v, err)
		}
		t.total += n
		if i == 3 || i == 4 {
			t.idle += n
		}
	}
	return t, nil
}

// readCPUTimes reads the machine's CPU times; ok is false where /proc/stat
// cannot be read (then no idle share is reported).
func readCPUTimes() (cpuTimes, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	t, err := parseCPUTimes(b)
	return t, err == nil
}

// idlePct is the share of the CPUs' time spent idle between a and b, in %.
func idlePct(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return 100 * float64(b.idle-a.idle) / float64(b.total-a.total)
}

// readIOCalls is syscr plus syscw from /proc/PID/io: the read and write
// system calls pid has made (0 when the file cannot be read).
func readIOCalls(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	var n uint64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			c, _ := strconv.ParseUint(v, 10, 64)
			n += c
		}
	}
	return n
}

package main

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// The generated report sits between these markers in the doc; the rest
// of the doc is left alone.
const (
	beginMarker = "<!-- proxybench:begin: written by bench/run.sh, do not edit by hand -->"
	endMarker   = "<!-- proxybench:end -->"
)

// writeReport draws the plots, writes report.md next to results.json
// and splices the report into doc, when doc is not empty.
func writeReport(log *slog.Logger, res *results, outDir, doc string) error {
	images, err := writePlots(res, outDir)
	if err != nil {
		log.Warn("no plots", "error", err)
	}
	imgDir := outDir
	if doc != "" {
		if rel, err := filepath.Rel(filepath.Dir(doc), outDir); err == nil {
			imgDir = rel
		}
	}
	md := markdown(res, imgDir, images)
	if err := os.WriteFile(filepath.Join(outDir, "report.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if doc == "" {
		return nil
	}
	return splice(doc, md)
}

// splice replaces the text between the markers in doc with md, or
// appends md between new markers when doc has none.
func splice(doc, md string) error {
	old, err := os.ReadFile(doc)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	block := beginMarker + "\n\n" + md + "\n" + endMarker
	s := string(old)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(endMarker):]
	case strings.TrimSpace(s) == "":
		s = block + "\n"
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	}
	return os.WriteFile(doc, []byte(s), 0o644)
}

// refRate is the rate whose figures the targets and the plot use:
// 1,000 requests per second when it ran.
func refRate(p params) int {
	if slices.Contains(p.Rates, 1000) {
		return 1000
	}
	return p.Rates[len(p.Rates)/2]
}

func (res *results) column(name string) *column {
	for _, c := range res.Columns {
		if c.Name == name && c.NotRun == "" {
			return c
		}
	}
	return nil
}

func (c *column) latencyAt(rate int) *latencyStep {
	for i := range c.Latency {
		if c.Latency[i].Rate == rate {
			return &c.Latency[i]
		}
	}
	return nil
}

// streamsAt returns the step of n streams as asked for, which may
// have run fewer (streamStep.Capped).
func (c *column) streamsAt(n int) *streamStep {
	for i := range c.Streams {
		if c.Streams[i].Requested == n {
			return &c.Streams[i]
		}
	}
	return nil
}

// table accumulates a Markdown table with one column per contender.
type table struct {
	res *results
	b   *strings.Builder
}

func newTable(res *results, b *strings.Builder, first string) table {
	t := table{res, b}
	fmt.Fprintf(b, "| %s |", first)
	for _, c := range res.Columns {
		fmt.Fprintf(b, " %s |", c.Label)
	}
	b.WriteString("\n|---|")
	for range res.Columns {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	return t
}

// row writes one row; cell renders a column that ran.
func (t table) row(name string, cell func(c *column) string) {
	fmt.Fprintf(t.b, "| %s |", name)
	for _, c := range t.res.Columns {
		v := "not run"
		if c.NotRun == "" {
			v = cell(c)
		}
		fmt.Fprintf(t.b, " %s |", v)
	}
	t.b.WriteString("\n")
}

// added renders a figure of a proxy as the difference to the direct
// path, and the direct path's own figure as it is.
func added(c *column, direct, v micros, unit float64, format string) string {
	switch {
	case v.failedAt():
		return "fail"
	case c.Name == "direct" || direct == 0:
		return fmt.Sprintf(format, float64(v)/unit)
	case direct.failedAt():
		return "n/a"
	}
	return fmt.Sprintf("%+"+format[1:], float64(v-direct)/unit)
}

func mb(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

func markdown(res *results, imgDir string, images []string) string {
	var b strings.Builder
	p := res.Params
	direct := res.column("direct")
	ref := refRate(p)

	fmt.Fprintf(&b, "### Run of %s\n\n", res.Started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Command: `%s`, %s in all.\n\n", res.Command,
		res.Finished.Sub(res.Started).Round(1e9))
	m := res.Machine
	fmt.Fprintf(&b, "Machine: %d × %s, %.1f GiB of memory, Linux %s. Load average "+
		"before %s, after %s (other work on the machine shows here).\n\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.LoadBefore, m.LoadAfter)
	b.WriteString("| software | version |\n|---|---|\n")
	for _, v := range res.Versions {
		fmt.Fprintf(&b, "| %s | %s |\n", v.Name, v.Version)
	}
	for _, c := range res.Columns {
		if c.NotRun != "" {
			fmt.Fprintf(&b, "| %s | **not run**: %s |\n", c.Label, oneLine(c.NotRun))
		}
	}
	var bytesNote string
	if direct != nil {
		bytesNote = fmt.Sprintf(" (%d bytes direct)", direct.AnswerBytes)
	}
	fmt.Fprintf(&b, "\nSettings: non-streaming answers of %d tokens%s; open-loop steps of "+
		"%gs after %gs of warm-up; throughput with %d workers for %gs; both cut into %d "+
		"rounds that visit every contender in turn; streams of %d tokens %g ms apart, "+
		"started over %gs.\n\n", p.AnswerTokens, bytesNote, p.StepSeconds,
		p.WarmupSeconds, p.Concurrency, p.ThroughputSeconds, max(1, p.Rounds),
		p.StreamTokens, p.ITLMillis, p.RampSeconds)
	fmt.Fprintf(&b, "Protocols: the load generator speaks HTTP/1.1 keep-alive to every "+
		"contender; %s.\n\n", upstreamNote(res))

	// Non-streaming latency.
	b.WriteString("#### Non-streaming latency, open loop\n\n" +
		"Microseconds. The direct column is the latency itself; the others are what the " +
		"proxy adds to it at the same percentile and rate.\n\n")
	t := newTable(res, &b, "rate, percentile")
	for _, rate := range p.Rates {
		for _, pc := range []struct {
			name string
			get  func(summary) micros
		}{{"p50", func(s summary) micros { return s.P50 }},
			{"p90", func(s summary) micros { return s.P90 }},
			{"p99", func(s summary) micros { return s.P99 }}} {
			t.row(fmt.Sprintf("%s/s %s", thousands(rate), pc.name), func(c *column) string {
				st := c.latencyAt(rate)
				if st == nil {
					return "–"
				}
				var d micros
				if direct != nil && direct.latencyAt(rate) != nil {
					d = pc.get(direct.latencyAt(rate).Latency)
				}
				return added(c, d, pc.get(st.Latency), 1, "%.0f")
			})
		}
	}
	t.row("failed requests", func(c *column) string {
		n, sent := 0, 0
		for _, st := range c.Latency {
			n, sent = n+st.Failed, sent+st.Sent
		}
		return fmt.Sprintf("%d of %d", n, sent)
	})

	// Throughput and cost.
	fmt.Fprintf(&b, "\n#### Throughput and cost\n\n")
	t = newTable(res, &b, "figure")
	nginx := res.column("nginx")
	t.row(fmt.Sprintf("requests/s, %d workers", p.Concurrency), func(c *column) string {
		if c.Throughput == nil {
			return "–"
		}
		return thousands(int(c.Throughput.RPS))
	})
	if nginx != nil && nginx.Throughput != nil {
		t.row("throughput ÷ nginx's", func(c *column) string {
			if c.Throughput == nil {
				return "–"
			}
			return fmt.Sprintf("%.2f", c.Throughput.RPS/nginx.Throughput.RPS)
		})
	}
	t.row(fmt.Sprintf("CPU s per 10,000 requests at %s/s", thousands(ref)),
		func(c *column) string {
			if st := c.latencyAt(ref); st != nil && c.Name != "direct" {
				return fmt.Sprintf("%.2f", st.CPUPer10k)
			}
			return "–"
		})
	t.row("CPU s per 10,000 requests, throughput step", func(c *column) string {
		if c.Throughput != nil && c.Name != "direct" {
			return fmt.Sprintf("%.2f", c.Throughput.CPUPer10k)
		}
		return "–"
	})
	t.row("peak RSS, non-streaming steps (MB)", func(c *column) string {
		if c.Name == "direct" {
			return "–"
		}
		var peak int64
		for _, st := range c.Latency {
			peak = max(peak, st.PeakRSS)
		}
		if c.Throughput != nil {
			peak = max(peak, c.Throughput.PeakRSS)
		}
		return mb(peak)
	})
	t.row("failed requests", func(c *column) string {
		if c.Throughput == nil {
			return "–"
		}
		return fmt.Sprint(c.Throughput.Failed)
	})

	// Streaming.
	fmt.Fprintf(&b, "\n#### Streaming\n\n"+
		"Milliseconds. Time to first token is from the scheduled start of the stream "+
		"(connection included); event delay is how much later than k × %g ms after "+
		"the scheduled start token k arrived, over every token of the completed streams. "+
		"Direct: the figure itself; others: what the proxy adds.\n\n", p.ITLMillis)
	t = newTable(res, &b, "streams, figure")
	for _, n := range p.Streams {
		get := func(c *column) *streamStep { return c.streamsAt(n) }
		ds := func() *streamStep {
			if direct == nil {
				return nil
			}
			return direct.streamsAt(n)
		}()
		t.row(fmt.Sprintf("%s: completed", thousands(n)), func(c *column) string {
			st := get(c)
			switch {
			case st == nil:
				return "–"
			case st.Capped:
				return fmt.Sprintf("%s of %s (capped)", thousands(st.Completed),
					thousands(st.Streams))
			}
			return thousands(st.Completed)
		})
		t.row(fmt.Sprintf("%s: most open at once", thousands(n)), func(c *column) string {
			if st := get(c); st != nil {
				return thousands(int(st.PeakOpen))
			}
			return "–"
		})
		for _, f := range []struct {
			name string
			get  func(*streamStep) micros
		}{{"time to first token p50", func(s *streamStep) micros { return s.TTFT.P50 }},
			{"time to first token p99", func(s *streamStep) micros { return s.TTFT.P99 }},
			{"event delay p50", func(s *streamStep) micros { return s.Delay.P50 }},
			{"event delay p99", func(s *streamStep) micros { return s.Delay.P99 }}} {
			t.row(fmt.Sprintf("%s: %s", thousands(n), f.name), func(c *column) string {
				st := get(c)
				if st == nil {
					return "–"
				}
				var d micros
				if ds != nil {
					d = f.get(ds)
				}
				return added(c, d, f.get(st), 1000, "%.1f")
			})
		}
		t.row(fmt.Sprintf("%s: peak RSS (MB)", thousands(n)), func(c *column) string {
			if st := get(c); st != nil && c.Name != "direct" {
				return mb(st.PeakRSS)
			}
			return "–"
		})
		t.row(fmt.Sprintf("%s: CPU s", thousands(n)), func(c *column) string {
			if st := get(c); st != nil && c.Name != "direct" {
				return fmt.Sprintf("%.1f", st.CPUSeconds)
			}
			return "–"
		})
	}

	if note := capNote(res); note != "" {
		b.WriteString("\n" + note + "\n")
	}

	for _, img := range images {
		fmt.Fprintf(&b, "\n![%s](%s)\n", strings.TrimSuffix(img, ".png"),
			filepath.ToSlash(filepath.Join(imgDir, img)))
	}

	b.WriteString("\n#### Targets\n\n| target | this run | met |\n|---|---|---|\n")
	for _, tg := range targets(res) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", tg.target, tg.measured, tg.met)
	}
	if anyCapped(res) {
		b.WriteString("\nWith capped steps, the stream target is judged on CrossLogic's " +
			"own step: met only if it ran 10,000 streams, all completed, all open at " +
			"once, under 300 MB. \"Ahead on every figure\" compares like with like: in " +
			"a step where CrossLogic and the other ran different stream counts, only " +
			"the per-stream figures are compared (the share of streams completed and " +
			"the latency percentiles), and only when CrossLogic ran the more streams, " +
			"so that the difference can only count against it; peak RSS, which grows " +
			"with the count, is not compared, and the row says so.\n")
	}
	return b.String()
}

// upstreamNote says how the contenders that ran reach the simulator,
// for the settings.
func upstreamNote(res *results) string {
	var (
		order  []string // the ways, in table order
		labels = map[string][]string{}
	)
	for _, c := range res.Columns {
		if c.NotRun != "" || c.Name == "direct" {
			continue
		}
		// Runs older than the field reached it with HTTP/1.1 only.
		way := cmp.Or(c.Upstream, h11Upstream)
		if labels[way] == nil {
			order = append(order, way)
		}
		labels[way] = append(labels[way], c.Label)
	}
	if len(order) == 0 {
		return "no proxy ran"
	}
	var parts []string
	for i, way := range order {
		verb := " reaches the simulator with "
		switch {
		case i > 0:
			verb = " with "
		case len(labels[way]) > 1:
			verb = " reach the simulator with "
		}
		parts = append(parts, andList(labels[way])+verb+way)
	}
	return strings.Join(parts, "; ")
}

// anyCapped reports whether any contender ran a streaming step with
// fewer streams than asked for.
func anyCapped(res *results) bool {
	for _, c := range res.Columns {
		for _, st := range c.Streams {
			if st.Capped && c.NotRun == "" {
				return true
			}
		}
	}
	return false
}

// capNote explains the capped cells of the streaming table: which
// contenders ran fewer streams than asked for, how many, and why. It
// is "" when none was capped.
func capNote(res *results) string {
	// Who was capped in each step, grouped by how many ran.
	var capped []string
	for _, n := range res.Params.Streams {
		var (
			ran    []int
			labels = map[int][]string{}
		)
		for _, c := range res.Columns {
			if st := c.streamsAt(n); c.NotRun == "" && st != nil && st.Capped {
				if labels[st.Streams] == nil {
					ran = append(ran, st.Streams)
				}
				labels[st.Streams] = append(labels[st.Streams], c.Label)
			}
		}
		for _, m := range ran {
			who := andList(labels[m])
			if len(labels[m]) == ranColumns(res) {
				who = "Every contender"
			}
			capped = append(capped, fmt.Sprintf("%s ran the step of %s streams with %s",
				who, thousands(n), thousands(m)))
		}
	}
	if len(capped) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "**Capped.** %s: a capped cell shows the streams completed of those "+
		"that ran, and every figure of its step is of the streams that ran. ",
		strings.Join(capped, "; "))
	fmt.Fprintf(&b, "The open-file limit of this run was %s and could not be raised; a "+
		"process needs a descriptor for each socket and about %d for the rest. ",
		thousands(int(res.Params.FileLimit)), fileMargin)
	b.WriteString(socketsNote(res))
	return b.String()
}

// ranColumns counts the contenders that ran.
func ranColumns(res *results) int {
	n := 0
	for _, c := range res.Columns {
		if c.NotRun == "" {
			n++
		}
	}
	return n
}

// socketsNote says how many sockets per stream each contender that ran
// holds, which is why some were capped and others not.
func socketsNote(res *results) string {
	var two, one []string
	var h2c, direct, legacy bool
	for _, c := range res.Columns {
		switch {
		case c.NotRun != "":
		case c.SocketsPerStream == 0:
			legacy = true
		case c.Name == "direct":
			direct = true
		case c.SocketsPerStream == 2:
			two = append(two, c.Label)
		default:
			one = append(one, c.Label)
			h2c = h2c || c.Upstream == h2cUpstream
		}
	}
	if legacy {
		return "This run is older than per-contender caps: it capped every contender " +
			"alike, at what a process holding two sockets per stream can carry."
	}
	var parts []string
	if len(two) > 0 {
		parts = append(parts, fmt.Sprintf("%s %s two sockets per stream, the client's and "+
			"%s own to the simulator", andList(two), plural(two, "holds", "hold"),
			plural(two, "its", "their")))
	}
	if len(one) > 0 {
		s := fmt.Sprintf("%s %s one", andList(one), plural(one, "holds", "hold"))
		if h2c {
			s += ", as its streams to the simulator share a few multiplexed HTTP/2 " +
				"connections"
		}
		parts = append(parts, s)
	}
	if direct {
		parts = append(parts, "The direct path's simulator and load generator, separate "+
			"processes, hold one each")
	}
	return strings.Join(parts, ". ") + "."
}

// andList joins names as English does: "a", "a and b", "a, b and c".
func andList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func plural(names []string, one, many string) string {
	if len(names) == 1 {
		return one
	}
	return many
}

// targetRow is one of the targets, judged on this run.
type targetRow struct{ target, measured, met string }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// targets judges the targets: all are ratios or bounds within
// this one run.
func targets(res *results) []targetRow {
	cl, ng, direct := res.column("crosslogic"), res.column("nginx"), res.column("direct")
	if cl == nil {
		return []targetRow{{"all", "CrossLogic did not run", "**no**"}}
	}
	ref := refRate(res.Params)
	var rows []targetRow
	addedAt := func(c *column, get func(summary) micros) (micros, bool) {
		if c == nil || direct == nil || c.latencyAt(ref) == nil || direct.latencyAt(ref) == nil {
			return 0, false
		}
		return get(c.latencyAt(ref).Latency) - get(direct.latencyAt(ref).Latency), true
	}
	p50 := func(s summary) micros { return s.P50 }
	p99 := func(s summary) micros { return s.P99 }

	clP50, ok1 := addedAt(cl, p50)
	ngP50, ok2 := addedAt(ng, p50)
	if ok1 && ok2 {
		rows = append(rows, targetRow{
			fmt.Sprintf("added p50 at %s/s ≤ 1.25 × nginx's", thousands(ref)),
			fmt.Sprintf("%.0f µs vs %.0f µs (%.2f×)", clP50, ngP50, ratio(clP50, ngP50)),
			yesNo(!clP50.failedAt() && clP50 <= 1.25*ngP50)})
	} else {
		rows = append(rows, targetRow{"added p50 ≤ 1.25 × nginx's", "nginx or direct missing", "**no**"})
	}
	if clP99, ok := addedAt(cl, p99); ok {
		rows = append(rows, targetRow{
			fmt.Sprintf("added p99 at %s/s < 1 ms", thousands(ref)),
			fmt.Sprintf("%.0f µs", clP99), yesNo(!clP99.failedAt() && clP99 < 1000)})
	}
	if ng != nil && cl.Throughput != nil && ng.Throughput != nil {
		r := cl.Throughput.RPS / ng.Throughput.RPS
		rows = append(rows, targetRow{"throughput ≥ 0.8 × nginx's",
			fmt.Sprintf("%s vs %s requests/s (%.2f×)", thousands(int(cl.Throughput.RPS)),
				thousands(int(ng.Throughput.RPS)), r), yesNo(r >= 0.8)})
	}
	if row, ok := streamTarget(res, cl); ok {
		rows = append(rows, row)
	}
	for _, rival := range []string{"caddy", "portkey"} {
		rc := res.column(rival)
		if rc == nil {
			rows = append(rows, targetRow{"ahead of " + rival + " on every figure",
				rival + " did not run", "n/a"})
			continue
		}
		behind, skipped := behindOn(res, cl, rc)
		measured := "ahead on all"
		if len(behind) > 0 {
			measured = "behind on: " + strings.Join(behind, "; ")
		}
		if len(skipped) > 0 {
			measured += "; not compared: " + strings.Join(skipped, "; ")
		}
		rows = append(rows, targetRow{"ahead of " + rc.Label + " on every figure", measured,
			yesNo(len(behind) == 0)})
	}
	return rows
}

// streamTarget judges "≥ 10,000 concurrent streams, peak RSS < 300 MB"
// on the most streams CrossLogic itself ran: met only if that was
// 10,000 or more, all completed, all open at once, under 300 MB.
func streamTarget(res *results, cl *column) (targetRow, bool) {
	var big *streamStep
	for i := range cl.Streams {
		if big == nil || cl.Streams[i].Streams > big.Streams {
			big = &cl.Streams[i]
		}
	}
	if big == nil {
		return targetRow{}, false
	}
	ok := big.Completed == big.Streams && big.PeakOpen >= int64(big.Streams) &&
		big.PeakRSS < 300<<20
	measured := fmt.Sprintf("%s of %s completed, %s open at once, %s MB",
		thousands(big.Completed), thousands(big.Streams),
		thousands(int(big.PeakOpen)), mb(big.PeakRSS))
	met := yesNo(ok && big.Streams >= 10_000)
	if big.Streams < 10_000 && big.Capped {
		measured += fmt.Sprintf("; %s asked for, capped by an open-file limit of %s",
			thousands(big.Requested), thousands(int(res.Params.FileLimit)))
		met = "not measured; " + yesNo(ok) + " at " + thousands(big.Streams)
	}
	return targetRow{"≥ 10,000 concurrent streams, peak RSS < 300 MB", measured, met}, true
}

func ratio(a, b micros) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return float64(a / b)
}

// behindOn lists the figures on which cl does worse than rival, and
// the figures it left out. Lower is better everywhere but in throughput
// and completed streams.
//
// A streaming step in which the two ran different stream counts (one
// was capped) is compared on its per-stream figures only, the share of
// streams completed and the latency percentiles, and only when cl ran
// the more streams, so that the difference can only count against it;
// its peak RSS, which grows with the count, is left out.
func behindOn(res *results, cl, rival *column) (behind, skipped []string) {
	worse := func(name string, a, b micros) {
		if a.failedAt() && !b.failedAt() || !a.failedAt() && !b.failedAt() && a > b {
			behind = append(behind, name)
		}
	}
	for _, rate := range res.Params.Rates {
		a, b := cl.latencyAt(rate), rival.latencyAt(rate)
		if a == nil || b == nil {
			continue
		}
		r := thousands(rate) + "/s "
		worse(r+"p50", a.Latency.P50, b.Latency.P50)
		worse(r+"p90", a.Latency.P90, b.Latency.P90)
		worse(r+"p99", a.Latency.P99, b.Latency.P99)
		worse(r+"CPU", micros(a.CPUPer10k), micros(b.CPUPer10k))
	}
	if a, b := cl.Throughput, rival.Throughput; a != nil && b != nil {
		worse("throughput", micros(b.RPS), micros(a.RPS))
	}
	for _, n := range res.Params.Streams {
		a, b := cl.streamsAt(n), rival.streamsAt(n)
		if a == nil || b == nil {
			continue
		}
		s := thousands(n) + " streams "
		counts := fmt.Sprintf(" (%s vs %s streams ran)", thousands(a.Streams),
			thousands(b.Streams))
		switch {
		case a.Streams < b.Streams:
			skipped = append(skipped, s+"every figure"+counts)
			continue
		case a.Streams > b.Streams:
			worse(s+"completed share", micros(share(b)), micros(share(a)))
		default:
			worse(s+"completed", micros(b.Completed), micros(a.Completed))
		}
		worse(s+"TTFT p50", a.TTFT.P50, b.TTFT.P50)
		worse(s+"TTFT p99", a.TTFT.P99, b.TTFT.P99)
		worse(s+"delay p50", a.Delay.P50, b.Delay.P50)
		worse(s+"delay p99", a.Delay.P99, b.Delay.P99)
		if a.Streams == b.Streams {
			worse(s+"RSS", micros(a.PeakRSS), micros(b.PeakRSS))
		} else {
			skipped = append(skipped, s+"RSS"+counts)
		}
	}
	return behind, skipped
}

// share is the fraction of the streams that ran which completed.
func share(st *streamStep) float64 {
	if st.Streams == 0 {
		return 0
	}
	return float64(st.Completed) / float64(st.Streams)
}

// thousands writes n with commas: 10,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// plotColors keeps each contender's color the same in every plot.
var plotColors = map[string]string{
	"direct": "#888888", "crosslogic": "#1f5fbf", "nginx": "#2ca02c",
	"haproxy": "#ff7f0e", "caddy": "#9467bd", "portkey": "#d62728",
}

// writePlots draws latency.png (the latency distribution of every
// contender at the reference rate) and streams.png (memory and time to
// first token against concurrent streams) with gnuplot. It returns the
// file names written.
func writePlots(res *results, outDir string) ([]string, error) {
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "proxybench-plot")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	ref := refRate(res.Params)

	var script bytes.Buffer
	script.WriteString("set terminal pngcairo size 1100,620 font 'DejaVu Sans,11'\n" +
		"set grid\nset key left top\n")
	fmt.Fprintf(&script, "set output '%s'\n", filepath.Join(outDir, "latency.png"))
	fmt.Fprintf(&script, "set title 'Latency at %s requests/s, open loop, %d-byte answers "+
		"(lower is better)'\n", thousands(ref), answerBytes(res))
	script.WriteString("set logscale xy\nset xrange [1:1000]\n" +
		"set xtics ('0%%' 1, '50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000)\n" +
		"set xlabel 'percentile'\nset ylabel 'latency (ms)'\n")
	var plots []string
	for _, c := range res.Columns {
		st := (*latencyStep)(nil)
		if c.NotRun == "" {
			st = c.latencyAt(ref)
		}
		if st == nil || len(st.Spectrum) == 0 {
			continue
		}
		var d bytes.Buffer
		for _, pt := range st.Spectrum {
			fmt.Fprintf(&d, "%g %g\n", 100/(100-pt[0]), pt[1]/1000)
		}
		file := filepath.Join(tmp, "lat-"+c.Name+".dat")
		if err := os.WriteFile(file, d.Bytes(), 0o644); err != nil {
			return nil, err
		}
		plots = append(plots, fmt.Sprintf("'%s' using 1:2 with linespoints lw %d "+
			"lc rgb '%s' title '%s'", file, lineWidth(c), plotColors[c.Name], c.Label))
	}
	if len(plots) == 0 {
		return nil, fmt.Errorf("nothing to plot")
	}
	fmt.Fprintf(&script, "plot %s\n", strings.Join(plots, ", \\\n  "))

	// Streams: two panels side by side.
	fmt.Fprintf(&script, "unset logscale\nunset xrange\nset output '%s'\n",
		filepath.Join(outDir, "streams.png"))
	fmt.Fprintf(&script, "set multiplot layout 1,2 title 'Concurrent SSE streams, %d "+
		"tokens %g ms apart'\n", res.Params.StreamTokens, res.Params.ITLMillis)
	var tics []string
	for _, n := range res.Params.Streams {
		tics = append(tics, fmt.Sprintf("'%s' %d", thousands(n), n))
	}
	lo, hi := slices.Min(res.Params.Streams), slices.Max(res.Params.Streams)
	fmt.Fprintf(&script, "set xlabel 'concurrent streams'\nset xtics (%s)\n"+
		"set logscale x\nset xrange [%g:%g]\nset yrange [0:*]\n", strings.Join(tics, ", "),
		float64(lo)*0.7, float64(hi)*1.4)
	var rss, ttft []string
	for _, c := range res.Columns {
		if c.NotRun != "" || len(c.Streams) == 0 {
			continue
		}
		// gnuplot skips a point written as "?"; a p99 on failed streams
		// has no value.
		var d bytes.Buffer
		for _, st := range c.Streams {
			ttft := "?"
			if !st.TTFT.P99.failedAt() {
				ttft = fmt.Sprintf("%g", float64(st.TTFT.P99)/1000)
			}
			fmt.Fprintf(&d, "%d %g %s\n", st.Streams, float64(st.PeakRSS)/(1<<20), ttft)
		}
		file := filepath.Join(tmp, "streams-"+c.Name+".dat")
		if err := os.WriteFile(file, d.Bytes(), 0o644); err != nil {
			return nil, err
		}
		style := fmt.Sprintf("with linespoints lw %d lc rgb '%s' title '%s'", lineWidth(c),
			plotColors[c.Name], c.Label)
		if c.Name != "direct" {
			rss = append(rss, fmt.Sprintf("'%s' using 1:2 %s", file, style))
		}
		ttft = append(ttft, fmt.Sprintf("'%s' using 1:3 %s", file, style))
	}
	if len(rss) > 0 {
		script.WriteString("set title 'peak resident memory of the proxy'\n" +
			"set ylabel 'MB'\n")
		fmt.Fprintf(&script, "plot %s\n", strings.Join(rss, ", \\\n  "))
	}
	script.WriteString("set title 'time to first token, p99'\nset ylabel 'ms'\n" +
		"set logscale y\nset yrange [*:*]\n")
	fmt.Fprintf(&script, "plot %s\nunset multiplot\n", strings.Join(ttft, ", \\\n  "))

	cmd := exec.Command(gp)
	cmd.Stdin = &script
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	return []string{"latency.png", "streams.png"}, nil
}

func lineWidth(c *column) int {
	if c.Name == "crosslogic" {
		return 3
	}
	return 2
}

func answerBytes(res *results) int64 {
	if d := res.column("direct"); d != nil {
		return d.AnswerBytes
	}
	return 0
}

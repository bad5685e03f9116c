package agent

import (
	"context"
	"errors"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
)

// engineHealth is the outcome of a readiness check.
type engineHealth struct {
	err       error // nil when ready
	everReady bool  // whether any check so far found the engine ready
}

// monitor checks the engine's readiness every EngineCheckInterval until
// ctx ends, and wakes the heartbeat loop when readiness changes, so that
// the control plane hears of it at once rather than at the next beat.
func (a *Agent) monitor(ctx context.Context) {
	t := time.NewTicker(a.cfg.EngineCheckInterval)
	defer t.Stop()
	for {
		err := a.engine.Ready(ctx)
		if ctx.Err() != nil {
			return
		}
		a.setHealth(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setHealth records a readiness check. Only monitor calls it, so the
// load and the store need no lock.
func (a *Agent) setHealth(err error) {
	prev := a.health.Load()
	wasReady := prev != nil && prev.err == nil
	everReady := err == nil || (prev != nil && prev.everReady)
	a.health.Store(&engineHealth{err: err, everReady: everReady})

	switch {
	case err == nil && !wasReady:
		a.log.Info("engine ready")
		a.readyOnce.Do(func() { close(a.ready) })
		a.wake()
	case err != nil && wasReady:
		a.log.Warn("engine not ready", "reason", err.Error())
		a.wake()
	case err != nil && prev == nil:
		a.log.Info("engine starting", "reason", err.Error())
	}
}

// state returns the node's state as reported to the control plane and on
// GET /health, with a reason for operators when it is not ready.
func (a *Agent) state() (agentapi.NodeState, string) {
	if r := a.draining.Load(); r != nil {
		return agentapi.StateDraining, *r
	}
	if a.supervisor != nil {
		if st := a.supervisor.Status(); !st.Running && st.LastExit != nil {
			return agentapi.StateUnhealthy, "engine exited (" + st.LastExit.Error() +
				"); restarting"
		}
	}
	h := a.health.Load()
	switch {
	case h == nil:
		return agentapi.StateStarting, "engine not checked yet"
	case h.err == nil:
		return agentapi.StateReady, ""
	case !h.everReady:
		return agentapi.StateStarting, h.err.Error()
	default:
		return agentapi.StateUnhealthy, h.err.Error()
	}
}

// heartbeatInterval returns the interval the control plane asked for.
func (a *Agent) heartbeatInterval() time.Duration {
	if ms := a.interval.Load(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return DefaultHeartbeatInterval
}

// NextHeartbeat returns the wait before the next heartbeat for the
// interval the control plane asked for and r uniform in [0, 1): the
// interval ±10%, so that nodes started together do not beat together.
func NextHeartbeat(interval time.Duration, r float64) time.Duration {
	return time.Duration(float64(interval) * (0.9 + 0.2*r))
}

// heartbeat sends one heartbeat with the node's state and load, and
// returns the wait before the next one.
func (a *Agent) heartbeat(ctx context.Context) (time.Duration, error) {
	a.hbMu.Lock()
	defer a.hbMu.Unlock()

	// The state is read under hbMu, after any drain that holds it began.
	req := agentapi.HeartbeatRequest{}
	req.State, req.Reason = a.state()
	load, err := a.engine.Load(ctx)
	if err != nil {
		// The state says why when the engine is down; otherwise an engine
		// without metrics (SGLang without --enable-metrics) reports none.
		a.log.Debug("engine load unavailable", "error", err)
	}
	req.Load = load

	var resp agentapi.HeartbeatResponse
	err = a.call(ctx, a.cpClient, "heartbeat", agentapi.PathHeartbeat, "", req, &resp)
	if err != nil {
		return 0, err
	}
	if resp.HeartbeatIntervalMS > 0 {
		a.interval.Store(resp.HeartbeatIntervalMS)
	}
	a.log.Debug("heartbeat sent", "state", req.State, "running", load.Running,
		"waiting", load.Waiting, "kv_cache_usage", load.KVCacheUsage)
	return NextHeartbeat(a.heartbeatInterval(), a.rand()), nil
}

// heartbeatLoop sends heartbeats until ctx ends: the first at once, then
// at the interval the control plane asks for, and at once when woken. A
// failed heartbeat is retried with backoff, never slower than the
// interval. A node_gone answer ends the loop with an error on fatal.
func (a *Agent) heartbeatLoop(ctx context.Context, fatal chan<- error) {
	b := backoff{min: time.Second}
	for {
		wait, err := a.heartbeat(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrNodeGone):
			fatal <- err
			return
		case err != nil:
			b.max = a.heartbeatInterval()
			wait = b.next(a.rand())
			a.log.Warn("heartbeat failed", "error", err, "retry_in_ms", wait.Milliseconds())
		default:
			b.reset()
		}
		if sleep(ctx, a.clock, wait, a.wakeHB) != nil {
			return
		}
	}
}

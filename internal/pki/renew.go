package pki

import "time"

// Renewal happens at two thirds of a certificate's lifetime, give or take
// a twentieth of the lifetime.
const (
	renewFraction = 2.0 / 3.0
	renewJitter   = 0.1 // total width of the jitter window, as a fraction
)

// RenewAt returns when a certificate valid from notBefore to notAfter
// should be renewed, given r, a uniform random number in [0, 1).
//
// The result is
//
//	notBefore + lifetime × (2/3 + (r − 0.5)/10)
//
// that is, between 61.7% (r = 0) and 71.7% (r → 1) of the lifetime.
//
// Two thirds leaves the last third, 8 hours of a 24-hour leaf, to retry
// through a control plane outage or a network partition before the
// certificate expires. The jitter spreads renewals over a tenth of the
// lifetime (2.4 hours of a 24-hour leaf), so that a fleet that joined
// together, for example after a scale-up, does not renew together and
// the control plane sees a trickle rather than a thundering herd.
//
// An r outside [0, 1] (or NaN) is clamped into it. If notAfter is not
// after notBefore, RenewAt returns notBefore: renew now.
func RenewAt(notBefore, notAfter time.Time, r float64) time.Time {
	lifetime := notAfter.Sub(notBefore)
	if lifetime <= 0 {
		return notBefore
	}
	switch {
	case !(r >= 0): // also catches NaN
		r = 0
	case r > 1:
		r = 1
	}
	fraction := renewFraction + (r-0.5)*renewJitter
	return notBefore.Add(time.Duration(float64(lifetime) * fraction))
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Spot providers for Config.Spot.
const (
	SpotAWS = "aws"
	SpotGCP = "gcp"
)

// DefaultSpotCheckInterval is how often the metadata service is polled.
// AWS gives two minutes' notice and GCP thirty seconds; five seconds
// leaves most of either to the drain.
const DefaultSpotCheckInterval = 5 * time.Second

// Metadata services, when Config.SpotMetadataURL is empty.
const (
	awsMetadataURL = "http://169.254.169.254"
	gcpMetadataURL = "http://metadata.google.internal"
)

// awsTokenTTL is the lifetime asked for an IMDSv2 session token. The
// token is fetched anew well before it runs out.
const awsTokenTTL = 6 * time.Hour

// SpotWatcher polls a cloud's metadata service for a spot interruption
// notice:
//
//   - AWS: GET /latest/meta-data/spot/instance-action answers 404 until
//     the instance is to be stopped or terminated, then 200 with the
//     action and its time. The request carries an IMDSv2 session token
//     when the service gives one (PUT /latest/api/token), as instances
//     requiring IMDSv2 refuse requests without.
//   - GCP: GET /computeMetadata/v1/instance/preempted, with the header
//     Metadata-Flavor: Google, answers TRUE once the instance is being
//     preempted.
type SpotWatcher struct {
	// Provider is SpotAWS or SpotGCP.
	Provider string
	// BaseURL is the metadata service's base URL; empty means the
	// provider's own.
	BaseURL string
	// HTTP makes the requests; nil means a client with a 2s timeout that
	// never goes through a proxy (the metadata service is link-local).
	HTTP *http.Client

	// Read and written by Check only, which is not safe for concurrent
	// use.
	token        string // IMDSv2 session token; empty for none
	tokenExpires time.Time
}

// metadataClient is SpotWatcher's default HTTP client.
var metadataClient = &http.Client{
	Timeout: 2 * time.Second,
	Transport: &http.Transport{
		Proxy:       nil,
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext,
	},
}

// Check asks the metadata service once. It returns a description of the
// interruption notice, or "" if there is none.
func (w *SpotWatcher) Check(ctx context.Context) (string, error) {
	switch w.Provider {
	case SpotAWS:
		return w.checkAWS(ctx)
	case SpotGCP:
		return w.checkGCP(ctx)
	}
	return "", fmt.Errorf("agent: unknown spot provider %q", w.Provider)
}

func (w *SpotWatcher) checkAWS(ctx context.Context) (string, error) {
	if w.token == "" || time.Now().After(w.tokenExpires) {
		w.refreshAWSToken(ctx)
	}
	header := http.Header{}
	if w.token != "" {
		header.Set("X-aws-ec2-metadata-token", w.token)
	}
	status, body, err := w.get(ctx, awsMetadataURL, "/latest/meta-data/spot/instance-action",
		header)
	switch {
	case err != nil:
		return "", err
	case status == http.StatusNotFound:
		return "", nil
	case status == http.StatusUnauthorized:
		w.token = "" // expired or revoked: fetch a new one next time
		return "", errors.New("agent: spot check: metadata token refused")
	case status != http.StatusOK:
		return "", fmt.Errorf("agent: spot check: metadata service answered %d", status)
	}
	var notice struct {
		Action string `json:"action"`
		Time   string `json:"time"`
	}
	if json.Unmarshal(body, &notice) != nil || notice.Action == "" {
		return "spot interruption", nil // a notice all the same
	}
	return "spot interruption: " + notice.Action + " at " + notice.Time, nil
}

// refreshAWSToken gets an IMDSv2 session token. A service that gives none
// (IMDSv1 only, or unreachable for now) leaves the token empty, and the
// next request goes without.
func (w *SpotWatcher) refreshAWSToken(ctx context.Context) {
	base := w.BaseURL
	if base == "" {
		base = awsMetadataURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/latest/api/token", nil)
	if err != nil {
		return
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds",
		fmt.Sprint(int(awsTokenTTL.Seconds())))
	resp, err := w.client().Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil || resp.StatusCode != http.StatusOK {
		return
	}
	w.token = strings.TrimSpace(string(b))
	w.tokenExpires = time.Now().Add(awsTokenTTL - 10*time.Minute)
}

func (w *SpotWatcher) checkGCP(ctx context.Context) (string, error) {
	header := http.Header{"Metadata-Flavor": {"Google"}}
	status, body, err := w.get(ctx, gcpMetadataURL, "/computeMetadata/v1/instance/preempted",
		header)
	switch {
	case err != nil:
		return "", err
	case status != http.StatusOK:
		return "", fmt.Errorf("agent: spot check: metadata service answered %d", status)
	case strings.EqualFold(strings.TrimSpace(string(body)), "TRUE"):
		return "spot interruption: preempted", nil
	}
	return "", nil
}

// get sends GET path to the metadata service.
func (w *SpotWatcher) get(ctx context.Context, defaultBase, path string,
	header http.Header) (int, []byte, error) {
	base := w.BaseURL
	if base == "" {
		base = defaultBase
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("agent: spot check: %w", err)
	}
	req.Header = header
	resp, err := w.client().Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("agent: spot check: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, nil, fmt.Errorf("agent: spot check: %w", err)
	}
	return resp.StatusCode, b, nil
}

func (w *SpotWatcher) client() *http.Client {
	if w.HTTP != nil {
		return w.HTTP
	}
	return metadataClient
}

// watchSpot polls for a spot interruption notice every
// SpotCheckInterval, by the agent's clock, until ctx ends. It returns a
// channel that receives the notice's description, or nil if no spot
// provider is configured. Failed checks are logged at Debug, and at Warn
// after a minute of failing: a metadata service that never answers means
// notices will be missed.
func (a *Agent) watchSpot(ctx context.Context) <-chan string {
	if a.cfg.Spot == "" {
		return nil
	}
	notice := make(chan string, 1)
	w := &SpotWatcher{Provider: a.cfg.Spot, BaseURL: a.cfg.SpotMetadataURL}
	go func() {
		var failingSince time.Time
		warned := false
		for {
			n, err := w.Check(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				if failingSince.IsZero() {
					failingSince = a.clock.Now()
				}
				a.log.Debug("spot check failed", "error", err)
				if !warned && a.clock.Now().Sub(failingSince) > time.Minute {
					a.log.Warn("spot checks failing; interruption notices may be missed",
						"error", err)
					warned = true
				}
			case n != "":
				a.log.Info("spot interruption notice", "notice", n)
				notice <- n
				return
			default:
				failingSince, warned = time.Time{}, false
			}
			if sleep(ctx, a.clock, a.cfg.SpotCheckInterval, nil) != nil {
				return
			}
		}
	}()
	return notice
}

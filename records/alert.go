package records

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventAlert is the event type of the alerts written beside the two_phase
// and downloader events, in the form of Suricata's EVE alerts.
const EventAlert = "alert"

// Alert is the `alert` object of an alert event, as Suricata writes it:
// what a rule matched, so that dashboards built for Suricata's alerts show
// spoki's detections with their own signature ids.
type Alert struct {
	// Action is always "allowed": spoki blocks nothing.
	Action string `json:"action"`
	// GID is the rule's generator id (1 as for text rules).
	GID int `json:"gid"`
	// SignatureID and Rev name the rule and its revision.
	SignatureID int `json:"signature_id"`
	Rev         int `json:"rev"`
	// Signature is the rule's message.
	Signature string `json:"signature"`
	// Category is the rule's class as Suricata's classification.config
	// words it, Severity its priority (1 is the highest).
	Category string `json:"category"`
	Severity int    `json:"severity"`
}

// The alerts spoki raises (README.md#alerts). The ids are in the range
// that rule sets leave to local rules; the two-phase rule is named after
// the paper's Suricata rule "TWO PHASE SCANNER".
var (
	// AlertTwoPhase is raised with the phase_two stage of a two_phase
	// event: an irregular SYN followed by a regular one from the same
	// source to the same port within the phase timeout.
	AlertTwoPhase = Alert{Action: "allowed", GID: 1, SignatureID: 9000001, Rev: 1,
		Signature: "SPOKI TWO PHASE SCANNER", Category: "Detection of a Network Scan", Severity: 3}
	// AlertDownloader is raised with each downloader event: a client sent
	// a command that fetches a URL (wget, curl, tftp, ftpget).
	AlertDownloader = Alert{Action: "allowed", GID: 1, SignatureID: 9000002, Rev: 1,
		Signature: "SPOKI DOWNLOADER COMMAND", Category: "A Network Trojan was detected", Severity: 1}
)

// alertBody is the body of an alert event after the flow fields.
type alertBody struct {
	Alert    *Alert `json:"alert"`
	AppProto string `json:"app_proto,omitempty"`
}

// AppendAlertEvent appends an alert event: the head of AppendEvent (flow
// and userid when flow is not nil), the alert object, app_proto (when not
// empty) and, under the key source (the type of the event that raised it:
// "two_phase", "downloader"), the members of fields, which must encode to
// a JSON object. On error dst is returned unchanged.
func AppendAlertEvent(dst []byte, t time.Time, flow *Flow, a *Alert, appProto, source string, fields any) ([]byte, error) {
	obj, err := json.Marshal(fields)
	if err != nil {
		return dst, fmt.Errorf("records: alert event: %w", err)
	}
	if len(obj) < 2 || obj[0] != '{' || reservedKey(source) {
		return dst, fmt.Errorf("records: alert event %q: %w", source, errNotObject)
	}
	n := len(dst)
	dst, err = AppendEvent(dst, EventAlert, t, flow, alertBody{Alert: a, AppProto: appProto})
	if err != nil {
		return dst[:n], err
	}
	dst = dst[:len(dst)-2] // "}\n"
	dst = append(dst, ',')
	dst = appendJSONString(dst, source)
	dst = append(dst, ':')
	dst = append(dst, obj...)
	return append(dst, "}\n"...), nil
}

package report

// The event log as the report reads it. readEvent is the one place that
// knows the event log's field names (README.md#events): a rename of a
// field is a change here only.

import (
	"encoding/json"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// event holds the fields of one event-log line that the report uses.
type event struct {
	Type      string
	Time      time.Time
	SrcIP     string
	DestIP    string
	DestPort  int
	Irregular bool   // syn
	Scanner   string // syn: the fingerprint
	Payload   []byte // session: the first data segment
	AppProto  string // session
	JA4       string // session, tls
	HASSH     string // session, ssh
	Creds     []credential
	// two_phase
	Stage           string
	DelayMS         float64
	PhaseOneTime    time.Time
	TwoPhaseAcked   bool
	TwoPhasePayload []byte
	// downloader
	Server, Name string
}

type credential struct{ user, pass string }

// wireEvent is the JSON of an event-log line.
type wireEvent struct {
	EventType string            `json:"event_type"`
	Timestamp records.EventTime `json:"timestamp"`
	SrcIP     string            `json:"src_ip"`
	DestIP    string            `json:"dest_ip"`
	DestPort  int               `json:"dest_port"`
	Irregular bool              `json:"irregular"`
	Scanner   string            `json:"scanner"`
	Payload   []byte            `json:"payload"` // base64
	AppProto  string            `json:"app_proto"`
	TLS       *struct {
		JA4 string `json:"ja4"`
	} `json:"tls"`
	SSH *struct {
		Client struct {
			HASSH struct {
				Hash string `json:"hash"`
			} `json:"hassh"`
		} `json:"client"`
	} `json:"ssh"`
	Telnet *struct {
		Credentials []struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"credentials"`
	} `json:"telnet"`
	MQTT *struct {
		Username    string `json:"username"`
		Password    string `json:"password"`
		HasUsername bool   `json:"has_username"`
		HasPassword bool   `json:"has_password"`
	} `json:"mqtt"`
	TDS *struct {
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"tds"`
	Stage    string  `json:"stage"`
	DelayMS  float64 `json:"delay_ms"`
	PhaseOne *struct {
		Timestamp records.EventTime `json:"timestamp"`
	} `json:"phase_one"`
	Session *struct {
		Payload []byte `json:"payload"`
	} `json:"session"`
	Server string `json:"server"`
	Name   string `json:"name"`
}

// readEvent decodes one event-log line into ev.
func readEvent(line []byte, ev *event) error {
	var w wireEvent
	if err := json.Unmarshal(line, &w); err != nil {
		return err
	}
	*ev = event{
		Type: w.EventType, Time: w.Timestamp.Time, SrcIP: w.SrcIP, DestIP: w.DestIP, DestPort: w.DestPort,
		Irregular: w.Irregular, Scanner: w.Scanner, Payload: w.Payload, AppProto: w.AppProto,
		Stage: w.Stage, DelayMS: w.DelayMS, Server: w.Server, Name: w.Name,
	}
	if w.TLS != nil {
		ev.JA4 = w.TLS.JA4
	}
	if w.SSH != nil {
		ev.HASSH = w.SSH.Client.HASSH.Hash
	}
	if w.Telnet != nil {
		for _, c := range w.Telnet.Credentials {
			ev.Creds = append(ev.Creds, credential{c.Username, c.Password})
		}
	}
	if w.MQTT != nil && (w.MQTT.HasUsername || w.MQTT.HasPassword) {
		ev.Creds = append(ev.Creds, credential{w.MQTT.Username, w.MQTT.Password})
	}
	if w.TDS != nil && (w.TDS.Username != "" || w.TDS.Password != "") {
		ev.Creds = append(ev.Creds, credential{w.TDS.Username, w.TDS.Password})
	}
	if w.PhaseOne != nil {
		ev.PhaseOneTime = w.PhaseOne.Timestamp.Time
	}
	if w.Session != nil {
		ev.TwoPhaseAcked = true
		ev.TwoPhasePayload = w.Session.Payload
	}
	return nil
}

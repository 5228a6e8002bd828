package handlers

// EventDownloader is the type of the event a handler raises with Conn.Emit
// for each URL that a downloader command in the client's data would fetch
// (wget, curl, tftp, ftpget; see analysis/urls). spoki never fetches it.
const EventDownloader = "downloader"

// Downloader is the fields of a `downloader` event, after the flow fields:
// {"app_proto":"telnet","source":"command","tool":"wget",
// "url":"http://192.0.2.9/x.sh","server":"192.0.2.9","port":80,"name":"x.sh"}.
type Downloader struct {
	// AppProto is the handler that saw the command.
	AppProto string `json:"app_proto"`
	// Source says where in the exchange: "request_line" or "body" (http),
	// "command" (telnet), ...
	Source string `json:"source"`
	// Tool is the downloader: wget, curl, tftp or ftpget.
	Tool string `json:"tool"`
	// URL is the normalised URL, Server its host (an IPv6 literal without
	// brackets), Port its port (explicit or the scheme's default) and Name
	// the last segment of its path ("" if none).
	URL    string `json:"url"`
	Server string `json:"server"`
	Port   int    `json:"port"`
	Name   string `json:"name"`
}

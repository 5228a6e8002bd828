package udpreply

import "strconv"

// AppendFields appends the `udp` event's service members for a payload
// received on port: `"service":"dns","dns":{...}` with what the service's
// parser read (`{"parsed":false}` when it could not), or nothing for a
// port without a service. Strings from the payload are escaped and
// bounded; the output is valid JSON whatever the payload.
func AppendFields(dst []byte, port uint16, p []byte) []byte {
	svc := ServiceOf(port)
	if svc == None {
		return dst
	}
	dst = append(dst, `"service":"`...)
	dst = append(dst, svc.String()...)
	dst = append(dst, `","`...)
	dst = append(dst, svc.String()...)
	dst = append(dst, `":`...)
	switch svc {
	case DNS:
		return appendDNSFields(dst, p)
	case NTP:
		return appendNTPFields(dst, p)
	case SSDP:
		return appendSSDPFields(dst, p)
	case SIP:
		return appendSIPFields(dst, p)
	case Memcached:
		return appendMemcachedFields(dst, p)
	case NetBIOS:
		return appendNetBIOSFields(dst, p)
	default:
		return appendSNMPFields(dst, p)
	}
}

func appendUnparsed(dst []byte) []byte { return append(dst, `{"parsed":false}`...) }

func appendUint(dst []byte, v uint64) []byte { return strconv.AppendUint(dst, v, 10) }

func appendInt(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }

func appendBool(dst []byte, v bool) []byte { return strconv.AppendBool(dst, v) }

// appendJSONBytes appends b as the inside of a JSON string: printable
// ASCII as is (quote and backslash escaped), every other byte as \u00XX,
// so that attacker bytes never break the line or its encoding.
func appendJSONBytes(dst []byte, b []byte) []byte {
	const hex = "0123456789abcdef"
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20 && c <= 0x7e:
			dst = append(dst, c)
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	return dst
}

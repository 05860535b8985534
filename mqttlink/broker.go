package mqttlink

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Broker is a broker address as paho will dial it.
type Broker struct {
	URL string // scheme://host:port[/path]: the port filled in when it was left out
	TLS bool   // the scheme is a TLS one
}

// brokerSchemes are the URL schemes paho dials, with the port used when none is given
// (mosquitto_pub's defaults: 1883 for plain MQTT, 8883 over TLS; the web ports for
// websockets).
var brokerSchemes = map[string]struct {
	port string
	tls  bool
	ws   bool
}{
	"tcp": {"1883", false, false}, "mqtt": {"1883", false, false},
	"ssl": {"8883", true, false}, "tls": {"8883", true, false}, "mqtts": {"8883", true, false},
	"mqtt+ssl": {"8883", true, false}, "tcps": {"8883", true, false},
	"ws": {"80", false, true}, "wss": {"443", true, true},
}

// ErrTLSFilesWithoutTLS is the refusal of TLS files (CA, client certificate) with a broker
// URL that is not TLS: they would be silently unused.
const ErrTLSFilesWithoutTLS = "TLS files are set but the broker URL is not TLS (use mqtts://, ssl:// or wss://)"

// BrokerSchemes lists the accepted broker URL schemes, for messages.
const BrokerSchemes = "mqtt, mqtts, tcp, ssl, tls, ws, wss"

// ParseBroker checks a broker URL the way the connection will use it and fills in the
// default port, so that whatever it accepts can be dialled: `hark config check` refuses
// what `hark run` could not use. Errors never repeat credentials the URL may carry.
func ParseBroker(raw string) (Broker, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return Broker{}, errors.New("not a broker URL such as mqtt://localhost or mqtts://broker.example:8883")
	}
	scheme := strings.ToLower(u.Scheme)
	s, ok := brokerSchemes[scheme]
	if !ok {
		return Broker{}, fmt.Errorf("scheme %q is not one of %s", u.Scheme, BrokerSchemes)
	}
	if u.User != nil {
		return Broker{}, errors.New("must not carry credentials; use mqtt.username and mqtt.password_file")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return Broker{}, errors.New("has no host name, as in mqtt://localhost")
	}
	if strings.Contains(host, ":") && net.ParseIP(host) == nil {
		// [::1] is an IPv6 address; "[:]" is nothing, and would not parse again.
		return Broker{}, fmt.Errorf("host %q is not an IPv6 address", host)
	}
	if strings.HasSuffix(u.Host, ":") {
		return Broker{}, fmt.Errorf("port is empty (leave \":\" out for the default %s)", s.port)
	}
	if port == "" {
		port = s.port
	}
	if n, ok := atoiPort(port); !ok || n == 0 {
		return Broker{}, fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if !s.ws && (strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "") {
		// mosquitto_pub -L reads a topic from the path; here the topics come from
		// mqtt.topic_prefix, so a path would be silently ignored.
		return Broker{}, fmt.Errorf("must not have a path or query for %s:// (topics come from mqtt.topic_prefix)", scheme)
	}
	out := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}
	if s.ws {
		out.Path, out.RawQuery = u.Path, u.RawQuery
	}
	return Broker{URL: out.String(), TLS: s.tls}, nil
}

func atoiPort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
		n = n*10 + int(r-'0')
	}
	return n, n <= 65535
}

// MaxBrokers bounds the URLs of one mqtt.broker list.
const MaxBrokers = 16

// SplitBrokers splits a comma-separated broker list into its URLs, trimmed, empty items
// dropped. It does not check them: ParseBrokers does.
func SplitBrokers(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ParseBrokers checks a comma-separated list of broker URLs, the nodes of one clustered
// broker (or one broker and its standby), each as ParseBroker does. They must be all TLS
// or all plain: the TLS files apply to every node, and a plain node in a TLS list would
// send the credentials in clear after a failover. Errors name the item (1-based) and
// never repeat credentials.
func ParseBrokers(s string) ([]Broker, error) {
	items := SplitBrokers(s)
	if len(items) == 0 {
		return nil, errors.New("not a broker URL such as mqtt://localhost or mqtts://broker.example:8883")
	}
	if len(items) > MaxBrokers {
		return nil, fmt.Errorf("%d broker URLs, more than the limit of %d", len(items), MaxBrokers)
	}
	out := make([]Broker, 0, len(items))
	seen := map[string]bool{}
	for i, raw := range items {
		b, err := ParseBroker(raw)
		if err != nil {
			if len(items) == 1 {
				return nil, err
			}
			return nil, fmt.Errorf("URL %d of %d: %w", i+1, len(items), err)
		}
		if seen[b.URL] {
			return nil, fmt.Errorf("URL %d of %d repeats %s", i+1, len(items), b.URL)
		}
		seen[b.URL] = true
		if i > 0 && b.TLS != out[0].TLS {
			return nil, errors.New("mixes TLS and plain URLs: the nodes of one broker must all use TLS or all not")
		}
		out = append(out, b)
	}
	return out, nil
}

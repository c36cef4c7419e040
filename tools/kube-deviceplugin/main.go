// Command kube-deviceplugin advertises a simulated GPU host's devices to a kubelet through the
// kubelet's device-plugin API (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1), the way NVIDIA's
// device plugin does on a real GPU node:
//
//   - nvidia.com/gpu: whole GPUs (not in MIG mode), one device per UUID;
//   - nvidia.com/mig-<profile>: MIG instances ("mixed" strategy), one resource per profile;
//   - nvidia.com/gpu.shared: time-sliced GPUs (-shared N takes the last N whole GPUs), each
//     advertised -replicas times as <UUID>::<replica>, as NVIDIA's plugin names replicas.
//
// The devices come from the simulated NVML's state file (tools/gpuhost/simstate.py writes it).
// Allocate gives the container NVIDIA_VISIBLE_DEVICES with the allocated UUIDs and mounts, read
// only, the simulated libnvidia-ml.so.1, the host's state folder and a visibility file listing
// exactly those UUIDs, so NVML inside the container enumerates the devices the kubelet gave it
// and nothing else. A GPU the state marks lost is reported Unhealthy.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

const (
	libTarget     = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
	stateTarget   = "/run/simnvml/host"
	visibleTarget = "/run/simnvml/visible"
)

var (
	statePath  = flag.String("state", "", "the simulated host's NVML state file")
	libPath    = flag.String("lib", "", "the simulated libnvidia-ml.so.1 to mount into containers")
	pluginDir  = flag.String("plugin-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin folder")
	allocDir   = flag.String("alloc-dir", "", "where the per-allocation visibility files are written")
	sharedGPUs = flag.Int("shared", 0, "how many whole GPUs (the last ones) are time-sliced as nvidia.com/gpu.shared")
	replicas   = flag.Int("replicas", 4, "replicas of each time-sliced GPU")
	pollEvery  = flag.Duration("poll", 2*time.Second, "how often the state file and the kubelet socket are checked")
)

// device is one schedulable unit: its ID for the kubelet, the UUID NVML knows it by, health.
type device struct {
	id, uuid string
	healthy  bool
}

// inventory reads the state file: resource name -> devices, in NVML order.
func inventory(path string, shared, replicas int) (map[string][]device, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var whole []device
	lost := map[string]bool{}
	migs := map[string][]device{}
	var migOrder []string
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<16), 1<<20)
	for scanner.Scan() {
		fields := strings.Split(scanner.Text(), "\t")
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		kv := map[string]string{}
		for _, field := range fields[1:] {
			if k, v, ok := strings.Cut(field, "="); ok {
				kv[k] = v
			}
		}
		switch fields[0] {
		case "gpu":
			lost[kv["uuid"]] = kv["lost"] == "1"
			if kv["mig"] != "1" {
				whole = append(whole, device{id: kv["uuid"], uuid: kv["uuid"], healthy: kv["lost"] != "1"})
			}
		case "mig":
			name := kv["name"]
			profile := name[strings.LastIndex(name, " ")+1:]
			resource := "nvidia.com/mig-" + profile
			if _, seen := migs[resource]; !seen {
				migOrder = append(migOrder, resource)
			}
			migs[resource] = append(migs[resource], device{id: kv["uuid"], uuid: kv["uuid"], healthy: !lost[kv["parent"]]})
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if shared > len(whole) {
		return nil, fmt.Errorf("-shared %d: the host has %d whole GPUs", shared, len(whole))
	}
	resources := map[string][]device{"nvidia.com/gpu": whole[:len(whole)-shared]}
	var sliced []device
	for _, gpu := range whole[len(whole)-shared:] {
		for r := 0; r < replicas; r++ {
			sliced = append(sliced, device{id: fmt.Sprintf("%s::%d", gpu.uuid, r), uuid: gpu.uuid, healthy: gpu.healthy})
		}
	}
	if shared > 0 {
		resources["nvidia.com/gpu.shared"] = sliced
	}
	for _, resource := range migOrder {
		resources[resource] = migs[resource]
	}
	return resources, nil
}

// plugin serves one resource on its own socket in the kubelet's device-plugin folder.
type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	resource string
	socket   string
	server   *grpc.Server

	mu      sync.Mutex
	devices []device
	changed chan struct{}
}

var allocations atomic.Int64

func newPlugin(resource string, devices []device) *plugin {
	name := strings.NewReplacer("/", "-", ".", "-").Replace(resource)
	return &plugin{
		resource: resource,
		socket:   filepath.Join(*pluginDir, "gpuspawner-"+name+".sock"),
		devices:  devices,
		changed:  make(chan struct{}),
	}
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) snapshot() ([]*pluginapi.Device, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := make([]*pluginapi.Device, 0, len(p.devices))
	for _, d := range p.devices {
		health := pluginapi.Healthy
		if !d.healthy {
			health = pluginapi.Unhealthy
		}
		list = append(list, &pluginapi.Device{ID: d.id, Health: health})
	}
	return list, p.changed
}

// update replaces the device list; ListAndWatch streams send it again when it differs.
func (p *plugin) update(devices []device) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fmt.Sprint(devices) == fmt.Sprint(p.devices) {
		return
	}
	p.devices = devices
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	for {
		list, changed := p.snapshot()
		if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: list}); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (p *plugin) uuidOf(id string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.devices {
		if d.id == id {
			return d.uuid, true
		}
	}
	return "", false
}

func (p *plugin) Allocate(_ context.Context, request *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	response := &pluginapi.AllocateResponse{}
	for _, container := range request.ContainerRequests {
		var uuids []string
		seen := map[string]bool{}
		for _, id := range container.DevicesIDs {
			uuid, ok := p.uuidOf(id)
			if !ok {
				return nil, fmt.Errorf("%s: unknown device %q", p.resource, id)
			}
			if !seen[uuid] {
				seen[uuid] = true
				uuids = append(uuids, uuid)
			}
		}
		sort.Strings(uuids)
		visible := filepath.Join(*allocDir, fmt.Sprintf("visible-%d-%d", os.Getpid(), allocations.Add(1)))
		if err := os.WriteFile(visible, []byte(strings.Join(uuids, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		log.Printf("allocate %s: %v -> %s", p.resource, container.DevicesIDs, visible)
		response.ContainerResponses = append(response.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(uuids, ",")},
			Mounts: []*pluginapi.Mount{
				{ContainerPath: libTarget, HostPath: *libPath, ReadOnly: true},
				{ContainerPath: stateTarget, HostPath: filepath.Dir(*statePath), ReadOnly: true},
				{ContainerPath: visibleTarget, HostPath: visible, ReadOnly: true},
			},
			Annotations: map[string]string{"gpuspawner.io/devices": strings.Join(uuids, ",")},
		})
	}
	return response, nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func (p *plugin) serve() error {
	if p.server != nil {
		p.server.Stop()
	}
	_ = os.Remove(p.socket)
	listener, err := net.Listen("unix", p.socket)
	if err != nil {
		return err
	}
	p.server = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(p.server, p)
	go func() {
		if err := p.server.Serve(listener); err != nil {
			log.Printf("%s: serve: %v", p.resource, err)
		}
	}()
	return nil
}

// register tells the kubelet about this plugin's socket and resource.
func (p *plugin) register() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+filepath.Join(*pluginDir, "kubelet.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.resource,
	})
	return err
}

// kubeletSocketID changes when the kubelet restarts (it recreates its socket, and forgets plugins).
func kubeletSocketID() string {
	info, err := os.Stat(filepath.Join(*pluginDir, "kubelet.sock"))
	if err != nil {
		return ""
	}
	st, _ := info.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%v-%v", st.Ino, info.ModTime().UnixNano())
}

func main() {
	flag.Parse()
	if *statePath == "" || *libPath == "" || *allocDir == "" {
		log.Fatal("-state, -lib and -alloc-dir are required")
	}
	if err := os.MkdirAll(*allocDir, 0o755); err != nil {
		log.Fatal(err)
	}
	resources, err := inventory(*statePath, *sharedGPUs, *replicas)
	if err != nil {
		log.Fatal(err)
	}
	var plugins []*plugin
	for resource, devices := range resources {
		plugins = append(plugins, newPlugin(resource, devices))
	}
	sort.Slice(plugins, func(i, j int) bool { return plugins[i].resource < plugins[j].resource })

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	registeredWith := ""
	ticker := time.NewTicker(*pollEvery)
	defer ticker.Stop()
	for {
		// a kubelet that (re)starts empties its plugin folder and forgets its plugins: serve
		// the sockets again and register each resource with it
		if id := kubeletSocketID(); id != "" && id != registeredWith {
			ok := true
			for _, p := range plugins {
				if err := p.serve(); err != nil {
					log.Printf("%s: serve: %v", p.resource, err)
					ok = false
					break
				}
				if err := p.register(); err != nil {
					log.Printf("%s: register: %v", p.resource, err)
					ok = false
					break
				}
				log.Printf("registered %s (%d devices) as %s", p.resource, len(p.devices), filepath.Base(p.socket))
			}
			if ok {
				registeredWith = id
			}
		}
		if current, err := inventory(*statePath, *sharedGPUs, *replicas); err == nil {
			for _, p := range plugins {
				p.update(current[p.resource])
			}
		}
		select {
		case <-stop:
			for _, p := range plugins {
				if p.server != nil {
					p.server.Stop()
				}
				_ = os.Remove(p.socket)
			}
			return
		case <-ticker.C:
		}
	}
}

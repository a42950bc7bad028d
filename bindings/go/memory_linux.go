// memory_linux.go: the machine's physical memory, which bounds what a copy out of a tensor
// may allocate (see outBuf).

package autograd

import "syscall"

// physicalMemory is the machine's RAM in bytes, or 0 if the system does not say.
func physicalMemory() uint64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

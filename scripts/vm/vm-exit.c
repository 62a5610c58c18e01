/* Report a test result to QEMU through `-device isa-debug-exit,iobase=0xf4,iosize=4`: QEMU exits
 * at once with status (code << 1) | 1. Usage: vm-exit CODE. (The VM has no /dev/port.) */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

int main(int argc, char **argv)
{
	int code = argc > 1 ? atoi(argv[1]) : 1;

	if (ioperm(0xf4, 4, 1)) {
		perror("vm-exit: ioperm");
		return 1;
	}
	outl((unsigned int)code, 0xf4);
	/* Only reached without the device. */
	fprintf(stderr, "vm-exit: no isa-debug-exit device\n");
	return 1;
}

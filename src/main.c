/* main.c: command line entry point. */
#include <stdio.h>

int main(void)
{
    puts("auth-serve " AUTH_VERSION);
    return 0;
}

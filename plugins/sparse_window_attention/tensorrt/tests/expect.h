// The harnesses' one assertion: report and count a failure, keep going (so one run lists them all).
#pragma once

#include <cstdio>

inline int g_failures = 0;

#define EXPECT(c)                                                             \
    do {                                                                      \
        if (!(c)) {                                                           \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
            ++g_failures;                                                     \
        }                                                                     \
    } while (0)

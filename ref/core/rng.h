/* rng.h: deterministic pseudo-random numbers for weight initialization (internal).
 * xoshiro256** seeded through splitmix64; a (seed, stream) pair names an independent sequence,
 * so a tensor's values depend only on the seed and its name, never on thread count or order. */
#ifndef HYLO_RNG_H
#define HYLO_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} hylo_rng;

void hylo_rng_seed(hylo_rng *rng, uint64_t seed, uint64_t stream);
uint64_t hylo_rng_next(hylo_rng *rng);
double hylo_rng_uniform(hylo_rng *rng); /* [0, 1), 53 random bits */
double hylo_rng_normal(hylo_rng *rng);  /* N(0, 1), Box-Muller */
uint64_t hylo_hash_string(const char *s); /* FNV-1a, 64 bit */

#endif

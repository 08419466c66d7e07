/* rlfm_protocol.h -- reference implementation of the rlfm-edge serial protocol, version 1.
 *
 * For firmware authors: header-only, C99, no allocation, no dependencies.
 * Layout (all multi-byte fields little-endian):
 *
 *   wire:     COBS( payload | crc16(payload) ) 0x00
 *   payload:  version:u8 (=1) | type:u8 | seq:u16 | body
 *   crc16:    CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0),
 *             over the payload, appended little-endian; check value "123456789" -> 0x29B1
 *
 *   OBSERVATION 0x01 robot->host: n:u16 | obs:f32[n] | reward:f32 | flags:u8
 *                                flags bit0 EPISODE_END, bit1 RESET (reward ignored,
 *                                host restarts its sequence check at this seq),
 *                                bit2 TERMINAL (with EPISODE_END: the episode ended in an
 *                                absorbing state, e.g. the robot fell), bit3 REPEAT (the
 *                                previous OBSERVATION got no ACTION; same content, new seq),
 *                                bit4 GOAL (with TERMINAL: that absorbing state is the task's
 *                                goal, e.g. the car reached the flag, worth the top reward;
 *                                TERMINAL alone: the host's default kind, terminal_state)
 *   ACTION      0x02 host->robot: ack_seq:u16 (seq of the OBSERVATION answered) | action:i32
 *   HEARTBEAT   0x03 both ways:   uptime_ms:u32
 *   ERROR       0x04 both ways:   code:u8 | ref_seq:u16 | text:utf-8 (rest of payload)
 *
 * Each sender numbers its frames 0,1,2,... (mod 65536) across all types. The host answers
 * every valid OBSERVATION with one ACTION (ack_seq = that observation's seq; action -1
 * answers an EPISODE_END observation: reset the robot), or with an ERROR code 2 (invalid
 * observation) when it rejects it. Payloads are at most
 * RLFM_MAX_PAYLOAD bytes.
 */
#ifndef RLFM_PROTOCOL_H
#define RLFM_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RLFM_VERSION 1
#define RLFM_MAX_PAYLOAD 512
#define RLFM_MAX_OBS ((RLFM_MAX_PAYLOAD - 4 - 2 - 4 - 1) / 4)
/* worst-case bytes on the wire for one frame, delimiter included */
#define RLFM_MAX_FRAME (RLFM_MAX_PAYLOAD + 2 + (RLFM_MAX_PAYLOAD + 2) / 254 + 2)

enum rlfm_type { RLFM_OBSERVATION = 1, RLFM_ACTION = 2, RLFM_HEARTBEAT = 3, RLFM_ERROR = 4 };
enum rlfm_flags { RLFM_EPISODE_END = 1, RLFM_RESET = 2, RLFM_TERMINAL = 4, RLFM_REPEAT = 8,
                  RLFM_GOAL = 16 };
enum rlfm_error_code { RLFM_ERR_BAD_FRAME = 1, RLFM_ERR_INVALID_OBSERVATION = 2,
                       RLFM_ERR_INTERNAL = 3 };

static inline uint16_t rlfm_crc16(const uint8_t *data, size_t len) {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < len; i++) {
    crc ^= (uint16_t)data[i] << 8;
    for (int b = 0; b < 8; b++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021)
                                                      : (uint16_t)(crc << 1);
  }
  return crc;
}

/* COBS-encode len bytes from in to out (room for len + len/254 + 1); returns bytes written. */
static inline size_t rlfm_cobs_encode(const uint8_t *in, size_t len, uint8_t *out) {
  size_t code_at = 0, o = 1;
  uint8_t code = 1;
  for (size_t i = 0; i < len; i++) {
    if (in[i] == 0) {
      out[code_at] = code; code_at = o++; code = 1;
    } else {
      out[o++] = in[i];
      if (++code == 0xFF) { out[code_at] = code; code_at = o++; code = 1; }
    }
  }
  out[code_at] = code;
  return o;
}

/* Decode one COBS frame (without its 0x00) into out (cap bytes); returns the decoded length,
 * or 0 if malformed or longer than cap: a frame of n bytes can decode to n - 1, which is more
 * than a payload buffer holds when the frame is junk of maximum length. */
static inline size_t rlfm_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
  size_t i = 0, o = 0;
  while (i < len) {
    uint8_t code = in[i++];
    if (code == 0 || i + code - 1 > len) return 0;
    for (uint8_t k = 1; k < code; k++) {
      if (in[i] == 0 || o == cap) return 0;
      out[o++] = in[i++];
    }
    if (code != 0xFF && i < len) {
      if (o == cap) return 0;
      out[o++] = 0;
    }
  }
  return o;
}

static inline void rlfm_put_u16(uint8_t *p, uint16_t v) { p[0] = v & 0xFF; p[1] = v >> 8; }
static inline uint16_t rlfm_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline void rlfm_put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t rlfm_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void rlfm_put_f32(uint8_t *p, float f) {
  uint32_t v; memcpy(&v, &f, 4); rlfm_put_u32(p, v);
}

/* Wrap a payload into a frame in out (RLFM_MAX_FRAME bytes); returns bytes to write. */
static inline size_t rlfm_frame(uint8_t *payload, size_t len, uint8_t *out) {
  uint16_t crc = rlfm_crc16(payload, len);
  payload[len] = crc & 0xFF;           /* payload buffer needs 2 spare bytes */
  payload[len + 1] = crc >> 8;
  size_t n = rlfm_cobs_encode(payload, len + 2, out);
  out[n++] = 0x00;
  return n;
}

/* Build an OBSERVATION frame; returns its length, or 0 if n is too large. */
static inline size_t rlfm_encode_observation(uint16_t seq, const float *obs, uint16_t n,
                                             float reward, uint8_t flags, uint8_t *out) {
  uint8_t p[RLFM_MAX_PAYLOAD + 2];
  if (n > RLFM_MAX_OBS) return 0;
  p[0] = RLFM_VERSION; p[1] = RLFM_OBSERVATION; rlfm_put_u16(p + 2, seq);
  rlfm_put_u16(p + 4, n);
  for (uint16_t i = 0; i < n; i++) rlfm_put_f32(p + 6 + 4 * i, obs[i]);
  rlfm_put_f32(p + 6 + 4 * n, reward);
  p[10 + 4 * n] = flags;
  return rlfm_frame(p, 11 + 4 * (size_t)n, out);
}

static inline size_t rlfm_encode_heartbeat(uint16_t seq, uint32_t uptime_ms, uint8_t *out) {
  uint8_t p[8 + 2];
  p[0] = RLFM_VERSION; p[1] = RLFM_HEARTBEAT; rlfm_put_u16(p + 2, seq);
  rlfm_put_u32(p + 4, uptime_ms);
  return rlfm_frame(p, 8, out);
}

/* Check one received frame (bytes before its 0x00): COBS, CRC, version. On success copies
 * the payload to payload (RLFM_MAX_PAYLOAD + 2 bytes) and returns its length, else 0. */
static inline size_t rlfm_unframe(const uint8_t *frame, size_t len, uint8_t *payload) {
  if (len > RLFM_MAX_FRAME) return 0;
  size_t n = rlfm_cobs_decode(frame, len, payload, RLFM_MAX_PAYLOAD + 2);
  if (n < 6) return 0;
  if (rlfm_crc16(payload, n - 2) != rlfm_get_u16(payload + n - 2)) return 0;
  if (payload[0] != RLFM_VERSION) return 0;
  return n - 2;
}

/* Parse an ACTION payload: returns 1 and fills ack_seq and action, else 0. */
static inline int rlfm_parse_action(const uint8_t *payload, size_t len, uint16_t *ack_seq,
                                    int32_t *action) {
  if (len != 10 || payload[1] != RLFM_ACTION) return 0;
  *ack_seq = rlfm_get_u16(payload + 4);
  *action = (int32_t)rlfm_get_u32(payload + 6);
  return 1;
}

#endif /* RLFM_PROTOCOL_H */

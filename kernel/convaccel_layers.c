// SPDX-License-Identifier: GPL-2.0-only
/*
 * convaccel layers: the checks of every layer of a SUBMIT and the hardware
 * descriptors they become (docs/hardware.md, v1 and v2 layer descriptors).
 *
 * The driver checks each layer as the device would: the geometry (so the
 * output's extent follows from the input, not from what the layer claims),
 * the data types, and then every tensor's whole extent against its buffer,
 * overflow-safe. Isolation between files does not depend on the device.
 */
#include <linux/overflow.h>
#include <linux/uaccess.h>

#include "convaccel.h"
#include "convaccel_compat.h"

/* The fields n .. pad_right, laid out alike in both uapi layer structs. */
struct convaccel_geometry {
	u32 n, c_in, h_in, w_in, c_out, h_out, w_out, groups, kh, kw;
	u32 stride_h, stride_w, dil_h, dil_w, pad_top, pad_bottom, pad_left, pad_right;
};

static_assert(offsetof(struct convaccel_layer, pad_right) -
	      offsetof(struct convaccel_layer, n) == 17 * sizeof(u32));
static_assert(offsetof(struct convaccel_layer2, pad_right) -
	      offsetof(struct convaccel_layer2, n) == 17 * sizeof(u32));
static_assert(sizeof(struct convaccel_geometry) == 18 * sizeof(u32));

enum tensor_use { TENSOR_REQUIRED, TENSOR_OPTIONAL, TENSOR_FORBIDDEN };

/* Bytes of @elsize-byte elements, a * b * c * d of them. */
static int tensor_bytes(u32 elsize, u32 a, u32 b, u32 c, u32 d, u64 *bytes)
{
	u64 v = elsize;

	if (check_mul_overflow(v, (u64)a, &v) || check_mul_overflow(v, (u64)b, &v) ||
	    check_mul_overflow(v, (u64)c, &v) || check_mul_overflow(v, (u64)d, &v))
		return -EOVERFLOW;
	*bytes = v;
	return 0;
}

/* Output size along one axis, or 0 if the kernel does not fit (as the device). */
static u64 out_size(u32 in, u32 pad_a, u32 pad_b, u32 k, u32 stride, u32 dil)
{
	u64 padded = (u64)in + pad_a + pad_b;
	u64 span = (u64)dil * (k - 1) + 1;

	return padded < span ? 0 : div_u64(padded - span, stride) + 1;
}

static bool lim_ok(u32 v, u32 lo, u32 hi)
{
	return v >= lo && v <= hi;
}

/* Every size within the device's limits. */
static int check_sizes(const struct convaccel_info *lim, const struct convaccel_geometry *g)
{
	u32 maxk = lim->max_kernel;

	if (!lim_ok(g->n, 1, lim->max_dim) || !lim_ok(g->h_in, 1, lim->max_dim) ||
	    !lim_ok(g->w_in, 1, lim->max_dim) || !lim_ok(g->h_out, 1, lim->max_dim) ||
	    !lim_ok(g->w_out, 1, lim->max_dim) ||
	    !lim_ok(g->c_in, 1, lim->max_channels) ||
	    !lim_ok(g->c_out, 1, lim->max_channels))
		return -EINVAL;
	if (!lim_ok(g->kh, 1, maxk) || !lim_ok(g->kw, 1, maxk) ||
	    !lim_ok(g->stride_h, 1, maxk) || !lim_ok(g->stride_w, 1, maxk) ||
	    !lim_ok(g->dil_h, 1, maxk) || !lim_ok(g->dil_w, 1, maxk))
		return -EINVAL;
	if (max(max(g->pad_top, g->pad_bottom), max(g->pad_left, g->pad_right)) > lim->max_pad)
		return -EINVAL;
	return 0;
}

/*
 * CONV, MAXPOOL, AVGPOOL: checked as docs/hardware.md says the device
 * checks them; the output size must follow from the input.
 */
static int check_window(const struct convaccel_info *lim, bool conv,
			const struct convaccel_geometry *g)
{
	int ret = check_sizes(lim, g);

	if (ret)
		return ret;
	if (conv) {
		if (!g->groups || g->c_in % g->groups || g->c_out % g->groups)
			return -EINVAL;
	} else if (g->groups != 1 || g->c_out != g->c_in || g->dil_h != 1 ||
		   g->dil_w != 1 || g->pad_top >= g->kh || g->pad_bottom >= g->kh ||
		   g->pad_left >= g->kw || g->pad_right >= g->kw) {
		return -EINVAL;
	}
	if (out_size(g->h_in, g->pad_top, g->pad_bottom, g->kh, g->stride_h, g->dil_h) !=
	    g->h_out ||
	    out_size(g->w_in, g->pad_left, g->pad_right, g->kw, g->stride_w, g->dil_w) !=
	    g->w_out)
		return -EINVAL;
	return 0;
}

/*
 * The other v2 ops have no window: kernel, stride and dilation 1, no
 * padding, groups 1, and the output shape the op gives.
 */
static int check_pointwise(const struct convaccel_info *lim, u32 op,
			   const struct convaccel_geometry *g)
{
	bool global = op == CONVACCEL_OP_GLOBAL_AVGPOOL || op == CONVACCEL_OP_GLOBAL_MAXPOOL;
	bool fc = op == CONVACCEL_OP_FC;
	int ret = check_sizes(lim, g);

	if (ret)
		return ret;
	if (g->kh != 1 || g->kw != 1 || g->stride_h != 1 || g->stride_w != 1 ||
	    g->dil_h != 1 || g->dil_w != 1 || g->groups != 1 ||
	    g->pad_top || g->pad_bottom || g->pad_left || g->pad_right)
		return -EINVAL;
	if (!fc && g->c_out != g->c_in)
		return -EINVAL;
	if (global || fc)
		return g->h_out == 1 && g->w_out == 1 &&
		       (!fc || (g->h_in == 1 && g->w_in == 1)) ? 0 : -EINVAL;
	return g->h_out == g->h_in && g->w_out == g->w_in ? 0 : -EINVAL;
}

/* The geometry fields are consecutive u32 in both descriptors too. */
static void put_geometry(u8 *d, const struct convaccel_geometry *g)
{
	const u32 *v = &g->n;
	int i;

	for (i = 0; i < sizeof(*g) / sizeof(u32); i++)
		put_unaligned_le32(v[i], d + i * sizeof(u32));
}

/* Take a reference to the buffer of @handle; its range must hold @bytes at @offset. */
static int resolve(struct convaccel_file *cf, struct convaccel_refs *refs, u32 handle,
		   u64 offset, u64 bytes, u64 *addr)
{
	struct convaccel_buffer *buf = convaccel_buffer_lookup(cf, handle);

	if (!buf)
		return -ENOENT;
	refs->bufs[refs->count++] = buf;
	if (offset > buf->size || bytes > buf->size - offset)
		return -EOVERFLOW;
	*addr = buf->dma + offset;
	return 0;
}

/* A (handle, offset) tensor of @bytes bytes, aligned to @align: its address. */
static int encode_tensor(struct convaccel_file *cf, struct convaccel_refs *refs,
			 const struct convaccel_tensor *t, u64 bytes, u32 align,
			 enum tensor_use use, u64 *addr)
{
	*addr = 0;
	if (t->pad)
		return -EINVAL;
	if (use == TENSOR_FORBIDDEN || (use == TENSOR_OPTIONAL && !t->handle))
		return t->handle || t->offset ? -EINVAL : 0;
	if (t->offset % align)
		return -EINVAL;
	return resolve(cf, refs, t->handle, t->offset, bytes, addr);
}

/**
 * convaccel_encode_layer() - check a v1 layer and write its descriptor
 * @cf: the submitting file
 * @refs: gets a reference to each buffer the layer uses
 * @l: the layer, as userspace gave it
 * @d: where its 128-byte hardware descriptor goes
 *
 * Return: 0, -EINVAL (a field, or geometry the device cannot run), -ENOENT
 * (a handle is not this file's), -EOVERFLOW (a tensor runs past its buffer).
 */
int convaccel_encode_layer(struct convaccel_file *cf, struct convaccel_refs *refs,
			   const struct convaccel_layer *l, u8 *d)
{
	const struct convaccel_geometry *g = (const void *)&l->n;
	bool conv = l->op == CONVACCEL_OP_CONV;
	bool bias = l->flags & CONVACCEL_LAYER_BIAS;
	u64 in_bytes, out_bytes, w_bytes = 0, in_addr, out_addr, w_addr, b_addr;
	const u32 f = sizeof(float);
	int ret;

	if (l->pad || (l->flags & ~CONVACCEL_LAYER_BIAS) ||
	    l->activation > CONVACCEL_ACT_RELU6)
		return -EINVAL;
	if (!conv && l->op != CONVACCEL_OP_MAXPOOL && l->op != CONVACCEL_OP_AVGPOOL)
		return -EINVAL;
	ret = check_window(&cf->ca->limits, conv, g);
	if (ret)
		return ret;
	ret = tensor_bytes(f, l->n, l->c_in, l->h_in, l->w_in, &in_bytes) ?:
	      tensor_bytes(f, l->n, l->c_out, l->h_out, l->w_out, &out_bytes);
	if (!ret && conv)
		ret = tensor_bytes(f, l->c_out, l->c_in / l->groups, l->kh, l->kw, &w_bytes);
	if (ret)
		return ret;
	ret = encode_tensor(cf, refs, &l->input, in_bytes, f, TENSOR_REQUIRED, &in_addr) ?:
	      encode_tensor(cf, refs, &l->output, out_bytes, f, TENSOR_REQUIRED, &out_addr) ?:
	      encode_tensor(cf, refs, &l->weight, w_bytes, f,
			    conv ? TENSOR_REQUIRED : TENSOR_FORBIDDEN, &w_addr) ?:
	      encode_tensor(cf, refs, &l->bias, (u64)l->c_out * f, f,
			    conv && bias ? TENSOR_REQUIRED : TENSOR_FORBIDDEN, &b_addr);
	if (ret)
		return ret;

	put_unaligned_le32(l->op, d + CONVACCEL_LAYER_OP_OFF);
	put_unaligned_le32((bias ? CONVACCEL_LAYER_FLAG_BIAS : 0) |
			   l->activation << CONVACCEL_LAYER_ACT_SHIFT,
			   d + CONVACCEL_LAYER_FLAGS_OFF);
	put_geometry(d + CONVACCEL_LAYER_N_OFF, g);
	put_unaligned_le64(in_addr, d + CONVACCEL_LAYER_INPUT_OFF);
	put_unaligned_le64(w_addr, d + CONVACCEL_LAYER_WEIGHT_OFF);
	put_unaligned_le64(b_addr, d + CONVACCEL_LAYER_BIAS_OFF);
	put_unaligned_le64(out_addr, d + CONVACCEL_LAYER_OUTPUT_OFF);
	return 0;
}

/* --- v2 -------------------------------------------------------------------- */

static_assert(CONVACCEL_LAYER_PAD_RIGHT_OFF - CONVACCEL_LAYER_N_OFF == 17 * 4);
static_assert(CONVACCEL_LAYER2_PAD_RIGHT_OFF - CONVACCEL_LAYER2_N_OFF == 17 * 4);
static_assert(CONVACCEL_OP_ACT == CONVACCEL_LAYER_OP_ACT);
static_assert(CONVACCEL_ACT_HARD_SWISH == CONVACCEL_LAYER_ACT_HSWISH);
static_assert(CONVACCEL_TENSOR_F32 == CONVACCEL_DTYPE_F32);
static_assert(CONVACCEL_TENSOR_S8 == CONVACCEL_DTYPE_S8);

static u32 dtype_size(u32 dtype)
{
	return dtype == CONVACCEL_DTYPE_S8 ? 1 : 4;
}

/*
 * A view of an (n, c, h, w) tensor: its whole extent inside its buffer.
 * Writes the 32-byte hardware view at @d; strides all 0 mean packed NCHW.
 */
static int encode_view(struct convaccel_file *cf, struct convaccel_refs *refs,
		       const struct convaccel_view *v, const u32 dims[4], u8 *d)
{
	u32 st[4] = { v->stride_n, v->stride_c, v->stride_h, v->stride_w };
	u32 size = dtype_size(v->dtype);
	u64 last = 0, term, bytes, addr;
	int i, ret;

	if (v->dtype >= CONVACCEL_DTYPE_COUNT || v->offset % size)
		return -EINVAL;
	if (!st[0] && !st[1] && !st[2] && !st[3]) {
		st[3] = 1;
		st[2] = dims[3];
		if (check_mul_overflow(dims[2], st[2], &st[1]) ||
		    check_mul_overflow(dims[1], st[1], &st[0]))
			return -EOVERFLOW;
	}
	for (i = 0; i < 4; i++) {
		if (check_mul_overflow((u64)(dims[i] - 1), (u64)st[i], &term) ||
		    check_add_overflow(last, term, &last))
			return -EOVERFLOW;
	}
	if (check_add_overflow(last, 1ULL, &bytes) ||
	    check_mul_overflow(bytes, (u64)size, &bytes))
		return -EOVERFLOW;
	ret = resolve(cf, refs, v->handle, v->offset, bytes, &addr);
	if (ret)
		return ret;
	put_unaligned_le64(addr, d + CONVACCEL_VIEW_ADDR_OFF);
	put_unaligned_le32(v->dtype, d + CONVACCEL_VIEW_DTYPE_OFF);
	put_unaligned_le32(st[0], d + CONVACCEL_VIEW_STRIDE_N_OFF);
	put_unaligned_le32(st[1], d + CONVACCEL_VIEW_STRIDE_C_OFF);
	put_unaligned_le32(st[2], d + CONVACCEL_VIEW_STRIDE_H_OFF);
	put_unaligned_le32(st[3], d + CONVACCEL_VIEW_STRIDE_W_OFF);
	return 0;
}

static bool view_is_zero(const struct convaccel_view *v)
{
	return !v->handle && !v->dtype && !v->offset && !v->stride_n && !v->stride_c &&
	       !v->stride_h && !v->stride_w;
}

static bool is_zp(s32 v)
{
	return v >= -128 && v <= 127;
}

/* A float32 that is finite and positive, from its bits. */
static bool positive_finite(u32 bits)
{
	return bits && !(bits >> 31) && (bits >> 23) != 0xff;
}

/* Rescale records an int8 op reads at `requant` (docs/hardware.md). */
static u32 rescale_records(u32 op, u32 c_out)
{
	switch (op) {
	case CONVACCEL_OP_CONV:
	case CONVACCEL_OP_FC:
	case CONVACCEL_OP_SCALE_SHIFT:
		return c_out;
	case CONVACCEL_OP_ADD:
		return 3;
	case CONVACCEL_OP_MUL:
	case CONVACCEL_OP_AVGPOOL:
	case CONVACCEL_OP_GLOBAL_AVGPOOL:
	case CONVACCEL_OP_ACT:
		return 1;
	default:
		return 0;
	}
}

/* Data types, activation and quantization fields of a v2 layer. */
static int check_types(const struct convaccel_info *lim, const struct convaccel_layer2 *l)
{
	u32 in = l->in0.dtype, out = l->out.dtype;
	bool two_inputs = l->op == CONVACCEL_OP_ADD || l->op == CONVACCEL_OP_MUL;
	bool s8_in = in == CONVACCEL_DTYPE_S8, s8_out = out == CONVACCEL_DTYPE_S8;

	if (in >= CONVACCEL_DTYPE_COUNT || out >= CONVACCEL_DTYPE_COUNT ||
	    !(lim->dtypes & BIT(in)) || !(lim->dtypes & BIT(out)))
		return -EOPNOTSUPP;
	if (l->op == CONVACCEL_OP_QUANTIZE) {
		if (in != CONVACCEL_DTYPE_F32 || !s8_out)
			return -EINVAL;
	} else if (l->op == CONVACCEL_OP_DEQUANTIZE) {
		if (!s8_in || out != CONVACCEL_DTYPE_F32)
			return -EINVAL;
	} else if (in != out || (two_inputs && l->in1.dtype != in)) {
		return -EINVAL;
	}
	if (l->op == CONVACCEL_OP_QUANTIZE || l->op == CONVACCEL_OP_DEQUANTIZE) {
		if (!positive_finite(l->qscale))
			return -EINVAL;
	} else if (l->qscale) {
		return -EINVAL;
	}
	if (l->activation >= 32 || !(lim->activations & BIT(l->activation)))
		return l->activation < 32 && l->activation <= CONVACCEL_ACT_HARD_SWISH ?
		       -EOPNOTSUPP : -EINVAL;
	if (s8_out && l->activation)
		return -EINVAL;		/* int8: the clamp and the lookup table */
	if (!is_zp(l->zp_in0) || !is_zp(l->zp_in1) || !is_zp(l->zp_out) ||
	    !is_zp(l->act_min) || !is_zp(l->act_max) || l->act_min > l->act_max)
		return -EINVAL;
	if (!s8_in && (l->zp_in0 || l->zp_in1))
		return -EINVAL;
	if (!s8_out && (l->zp_out || l->act_min || l->act_max))
		return -EINVAL;
	return 0;
}

/* The layer's shapes: in0, in1 and out dims, weight and bias element counts. */
static void layer2_shapes(const struct convaccel_layer2 *l, u32 in0[4], u32 in1[4],
			  u32 out[4])
{
	bool bcast = l->flags & CONVACCEL_LAYER2_BCAST;

	in0[0] = l->n; in0[1] = l->c_in; in0[2] = l->h_in; in0[3] = l->w_in;
	out[0] = l->n; out[1] = l->c_out; out[2] = l->h_out; out[3] = l->w_out;
	in1[0] = l->n; in1[1] = l->c_in;
	in1[2] = bcast ? 1 : l->h_in;
	in1[3] = bcast ? 1 : l->w_in;
}

/**
 * convaccel_encode_layer2() - check a v2 layer and write its descriptor
 * @cf: the submitting file
 * @refs: gets a reference to each buffer the layer uses
 * @l: the layer, as userspace gave it
 * @d: where its 256-byte hardware descriptor goes
 *
 * Return: 0, -EINVAL (a field, a shape or a data type the op does not
 * take), -EOPNOTSUPP (an op, activation or data type this device lacks),
 * -ENOENT (a handle is not this file's), -EOVERFLOW (a view or table runs
 * past its buffer).
 */
int convaccel_encode_layer2(struct convaccel_file *cf, struct convaccel_refs *refs,
			    const struct convaccel_layer2 *l, u8 *d)
{
	const struct convaccel_info *lim = &cf->ca->limits;
	const struct convaccel_geometry *g = (const void *)&l->n;
	bool windowed = l->op >= CONVACCEL_OP_CONV && l->op <= CONVACCEL_OP_AVGPOOL;
	bool weighted = l->op == CONVACCEL_OP_CONV || l->op == CONVACCEL_OP_FC;
	bool two_inputs = l->op == CONVACCEL_OP_ADD || l->op == CONVACCEL_OP_MUL;
	bool scale_shift = l->op == CONVACCEL_OP_SCALE_SHIFT;
	u32 valid = weighted ? CONVACCEL_LAYER2_BIAS :
		    l->op == CONVACCEL_OP_MUL ? CONVACCEL_LAYER2_BCAST : 0;
	bool bias = (l->flags & CONVACCEL_LAYER2_BIAS) || scale_shift;
	u32 in0[4], in1[4], out[4], esize, records;
	u64 w_bytes = 0, w_addr, b_addr, rq_addr, lut_addr;
	bool s8;
	int ret;

	if (!l->op || l->op >= 32 || !(lim->ops & BIT(l->op)))
		return l->op && l->op < CONVACCEL_LAYER_OP_COUNT ? -EOPNOTSUPP : -EINVAL;
	if (l->pad || (l->flags & ~valid))
		return -EINVAL;
	ret = windowed ? check_window(lim, l->op == CONVACCEL_OP_CONV, g) :
			 check_pointwise(lim, l->op, g);
	if (!ret)
		ret = check_types(lim, l);
	if (ret)
		return ret;
	if (!two_inputs && !view_is_zero(&l->in1))
		return -EINVAL;
	s8 = l->in0.dtype == CONVACCEL_DTYPE_S8 && l->op != CONVACCEL_OP_DEQUANTIZE;
	esize = dtype_size(l->in0.dtype);

	if (l->op == CONVACCEL_OP_CONV)
		ret = tensor_bytes(esize, l->c_out, l->c_in / l->groups, l->kh, l->kw, &w_bytes);
	else if (l->op == CONVACCEL_OP_FC)
		ret = tensor_bytes(esize, l->c_out, l->c_in, 1, 1, &w_bytes);
	else if (scale_shift)
		ret = tensor_bytes(esize, l->c_out, 1, 1, 1, &w_bytes);
	if (ret)
		return ret;
	records = s8 ? rescale_records(l->op, l->c_out) : 0;

	layer2_shapes(l, in0, in1, out);
	ret = encode_view(cf, refs, &l->in0, in0, d + CONVACCEL_LAYER2_IN0_OFF) ?:
	      encode_view(cf, refs, &l->out, out, d + CONVACCEL_LAYER2_OUT_OFF);
	if (!ret && two_inputs)
		ret = encode_view(cf, refs, &l->in1, in1, d + CONVACCEL_LAYER2_IN1_OFF);
	if (ret)
		return ret;
	ret = encode_tensor(cf, refs, &l->weight, w_bytes, esize,
			    w_bytes ? TENSOR_REQUIRED : TENSOR_FORBIDDEN, &w_addr) ?:
	      encode_tensor(cf, refs, &l->bias, (u64)l->c_out * 4, 4,
			    bias ? TENSOR_REQUIRED : TENSOR_FORBIDDEN, &b_addr) ?:
	      encode_tensor(cf, refs, &l->requant, (u64)records * CONVACCEL_RESCALE_SIZE, 4,
			    records ? TENSOR_REQUIRED : TENSOR_FORBIDDEN, &rq_addr) ?:
	      encode_tensor(cf, refs, &l->lut, CONVACCEL_LUT_SIZE, 1,
			    l->out.dtype == CONVACCEL_DTYPE_S8 ? TENSOR_OPTIONAL :
			    TENSOR_FORBIDDEN, &lut_addr);
	if (ret)
		return ret;

	put_unaligned_le32(l->op, d + CONVACCEL_LAYER2_OP_OFF);
	put_unaligned_le32(l->flags, d + CONVACCEL_LAYER2_FLAGS_OFF);
	put_unaligned_le32(l->activation, d + CONVACCEL_LAYER2_ACT_OFF);
	put_unaligned_le32(l->act_alpha, d + CONVACCEL_LAYER2_ACT_ALPHA_OFF);
	put_unaligned_le32(l->act_beta, d + CONVACCEL_LAYER2_ACT_BETA_OFF);
	put_geometry(d + CONVACCEL_LAYER2_N_OFF, g);
	put_unaligned_le64(w_addr, d + CONVACCEL_LAYER2_WEIGHT_OFF);
	put_unaligned_le64(b_addr, d + CONVACCEL_LAYER2_BIAS_OFF);
	put_unaligned_le64(rq_addr, d + CONVACCEL_LAYER2_REQUANT_OFF);
	put_unaligned_le64(lut_addr, d + CONVACCEL_LAYER2_LUT_OFF);
	put_unaligned_le32(l->zp_in0, d + CONVACCEL_LAYER2_ZP_IN0_OFF);
	put_unaligned_le32(l->zp_in1, d + CONVACCEL_LAYER2_ZP_IN1_OFF);
	put_unaligned_le32(l->zp_out, d + CONVACCEL_LAYER2_ZP_OUT_OFF);
	put_unaligned_le32(l->act_min, d + CONVACCEL_LAYER2_ACT_MIN_OFF);
	put_unaligned_le32(l->act_max, d + CONVACCEL_LAYER2_ACT_MAX_OFF);
	put_unaligned_le32(l->qscale, d + CONVACCEL_LAYER2_QSCALE_OFF);
	return 0;
}

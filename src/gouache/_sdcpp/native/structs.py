"""ctypes declarations of ``stable-diffusion.h``: structs, callback types and functions."""

from __future__ import annotations

from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_void_p,
)

c_enum = c_int  # every C enum here is int-sized (checked by the ABI test)


class sd_tiling_params_t(Structure):
    _fields_ = [
        ("enabled", c_bool),
        ("tile_size_x", c_int),
        ("tile_size_y", c_int),
        ("target_overlap", c_float),
        ("rel_size_x", c_float),
        ("rel_size_y", c_float),
    ]


class sd_embedding_t(Structure):
    _fields_ = [("name", c_char_p), ("path", c_char_p)]


class sd_ctx_params_t(Structure):
    _fields_ = [
        ("model_path", c_char_p),
        ("clip_l_path", c_char_p),
        ("clip_g_path", c_char_p),
        ("clip_vision_path", c_char_p),
        ("t5xxl_path", c_char_p),
        ("llm_path", c_char_p),
        ("llm_vision_path", c_char_p),
        ("diffusion_model_path", c_char_p),
        ("high_noise_diffusion_model_path", c_char_p),
        ("vae_path", c_char_p),
        ("taesd_path", c_char_p),
        ("control_net_path", c_char_p),
        ("embeddings", POINTER(sd_embedding_t)),
        ("embedding_count", c_uint32),
        ("photo_maker_path", c_char_p),
        ("tensor_type_rules", c_char_p),
        ("vae_decode_only", c_bool),
        ("free_params_immediately", c_bool),
        ("n_threads", c_int),
        ("wtype", c_enum),
        ("rng_type", c_enum),
        ("sampler_rng_type", c_enum),
        ("prediction", c_enum),
        ("lora_apply_mode", c_enum),
        ("offload_params_to_cpu", c_bool),
        ("enable_mmap", c_bool),
        ("keep_clip_on_cpu", c_bool),
        ("keep_control_net_on_cpu", c_bool),
        ("keep_vae_on_cpu", c_bool),
        ("flash_attn", c_bool),
        ("diffusion_flash_attn", c_bool),
        ("tae_preview_only", c_bool),
        ("diffusion_conv_direct", c_bool),
        ("vae_conv_direct", c_bool),
        ("circular_x", c_bool),
        ("circular_y", c_bool),
        ("force_sdxl_vae_conv_scale", c_bool),
        ("chroma_use_dit_mask", c_bool),
        ("chroma_use_t5_mask", c_bool),
        ("chroma_t5_mask_pad", c_int),
        ("qwen_image_zero_cond_t", c_bool),
        ("max_vram", c_float),
    ]


class sd_image_t(Structure):
    _fields_ = [
        ("width", c_uint32),
        ("height", c_uint32),
        ("channel", c_uint32),
        ("data", POINTER(c_uint8)),
    ]


class sd_slg_params_t(Structure):
    _fields_ = [
        ("layers", POINTER(c_int)),
        ("layer_count", c_size_t),
        ("layer_start", c_float),
        ("layer_end", c_float),
        ("scale", c_float),
    ]


class sd_guidance_params_t(Structure):
    _fields_ = [
        ("txt_cfg", c_float),
        ("img_cfg", c_float),
        ("distilled_guidance", c_float),
        ("slg", sd_slg_params_t),
    ]


class sd_sample_params_t(Structure):
    _fields_ = [
        ("guidance", sd_guidance_params_t),
        ("scheduler", c_enum),
        ("sample_method", c_enum),
        ("sample_steps", c_int),
        ("eta", c_float),
        ("shifted_timestep", c_int),
        ("custom_sigmas", POINTER(c_float)),
        ("custom_sigmas_count", c_int),
        ("flow_shift", c_float),
    ]


class sd_pm_params_t(Structure):
    _fields_ = [
        ("id_images", POINTER(sd_image_t)),
        ("id_images_count", c_int),
        ("id_embed_path", c_char_p),
        ("style_strength", c_float),
    ]


class sd_cache_params_t(Structure):
    _fields_ = [
        ("mode", c_enum),
        ("reuse_threshold", c_float),
        ("start_percent", c_float),
        ("end_percent", c_float),
        ("error_decay_rate", c_float),
        ("use_relative_threshold", c_bool),
        ("reset_error_on_compute", c_bool),
        ("Fn_compute_blocks", c_int),
        ("Bn_compute_blocks", c_int),
        ("residual_diff_threshold", c_float),
        ("max_warmup_steps", c_int),
        ("max_cached_steps", c_int),
        ("max_continuous_cached_steps", c_int),
        ("taylorseer_n_derivatives", c_int),
        ("taylorseer_skip_interval", c_int),
        ("scm_mask", c_char_p),
        ("scm_policy_dynamic", c_bool),
        ("spectrum_w", c_float),
        ("spectrum_m", c_int),
        ("spectrum_lam", c_float),
        ("spectrum_window_size", c_int),
        ("spectrum_flex_window", c_float),
        ("spectrum_warmup_steps", c_int),
        ("spectrum_stop_percent", c_float),
    ]


class sd_lora_t(Structure):
    _fields_ = [("is_high_noise", c_bool), ("multiplier", c_float), ("path", c_char_p)]


class sd_hires_params_t(Structure):
    _fields_ = [
        ("enabled", c_bool),
        ("upscaler", c_enum),
        ("model_path", c_char_p),
        ("scale", c_float),
        ("target_width", c_int),
        ("target_height", c_int),
        ("steps", c_int),
        ("denoising_strength", c_float),
        ("upscale_tile_size", c_int),
    ]


class sd_img_gen_params_t(Structure):
    _fields_ = [
        ("loras", POINTER(sd_lora_t)),
        ("lora_count", c_uint32),
        ("prompt", c_char_p),
        ("negative_prompt", c_char_p),
        ("clip_skip", c_int),
        ("init_image", sd_image_t),
        ("ref_images", POINTER(sd_image_t)),
        ("ref_images_count", c_int),
        ("auto_resize_ref_image", c_bool),
        ("increase_ref_index", c_bool),
        ("mask_image", sd_image_t),
        ("width", c_int),
        ("height", c_int),
        ("sample_params", sd_sample_params_t),
        ("strength", c_float),
        ("seed", c_int64),
        ("batch_count", c_int),
        ("control_image", sd_image_t),
        ("control_strength", c_float),
        ("pm_params", sd_pm_params_t),
        ("vae_tiling_params", sd_tiling_params_t),
        ("cache", sd_cache_params_t),
        ("hires", sd_hires_params_t),
    ]


class sd_vid_gen_params_t(Structure):
    _fields_ = [
        ("loras", POINTER(sd_lora_t)),
        ("lora_count", c_uint32),
        ("prompt", c_char_p),
        ("negative_prompt", c_char_p),
        ("clip_skip", c_int),
        ("init_image", sd_image_t),
        ("end_image", sd_image_t),
        ("control_frames", POINTER(sd_image_t)),
        ("control_frames_size", c_int),
        ("width", c_int),
        ("height", c_int),
        ("sample_params", sd_sample_params_t),
        ("high_noise_sample_params", sd_sample_params_t),
        ("moe_boundary", c_float),
        ("strength", c_float),
        ("seed", c_int64),
        ("video_frames", c_int),
        ("vace_strength", c_float),
        ("vae_tiling_params", sd_tiling_params_t),
        ("cache", sd_cache_params_t),
    ]


#: Every struct of the header with its C typedef name (for the ABI test).
STRUCTS: dict[str, type[Structure]] = {
    "sd_tiling_params_t": sd_tiling_params_t,
    "sd_embedding_t": sd_embedding_t,
    "sd_ctx_params_t": sd_ctx_params_t,
    "sd_image_t": sd_image_t,
    "sd_slg_params_t": sd_slg_params_t,
    "sd_guidance_params_t": sd_guidance_params_t,
    "sd_sample_params_t": sd_sample_params_t,
    "sd_pm_params_t": sd_pm_params_t,
    "sd_cache_params_t": sd_cache_params_t,
    "sd_lora_t": sd_lora_t,
    "sd_hires_params_t": sd_hires_params_t,
    "sd_img_gen_params_t": sd_img_gen_params_t,
    "sd_vid_gen_params_t": sd_vid_gen_params_t,
}

# --------------------------------------------------------------------------- callbacks

sd_ctx_p = c_void_p  # opaque sd_ctx_t*
upscaler_ctx_p = c_void_p  # opaque upscaler_ctx_t*

sd_log_cb_t = CFUNCTYPE(None, c_enum, c_char_p, c_void_p)
sd_progress_cb_t = CFUNCTYPE(None, c_int, c_int, c_float, c_void_p)
sd_preview_cb_t = CFUNCTYPE(None, c_int, c_int, POINTER(sd_image_t), c_bool, c_void_p)

# --------------------------------------------------------------------------- functions

#: name -> (restype, argtypes).  Functions returning malloc'd ``char*`` use c_void_p so the
#: caller can free the pointer (see :func:`take_string`).
FUNCTIONS: dict[str, tuple[object, list[object]]] = {
    "sd_set_log_callback": (None, [sd_log_cb_t, c_void_p]),
    "sd_set_progress_callback": (None, [sd_progress_cb_t, c_void_p]),
    "sd_set_preview_callback": (None, [sd_preview_cb_t, c_enum, c_int, c_bool, c_bool, c_void_p]),
    "sd_get_num_physical_cores": (c_int32, []),
    "sd_get_system_info": (c_char_p, []),
    "sd_ctx_supports_image_generation": (c_bool, [sd_ctx_p]),
    "sd_ctx_supports_video_generation": (c_bool, [sd_ctx_p]),
    "sd_type_name": (c_char_p, [c_enum]),
    "str_to_sd_type": (c_enum, [c_char_p]),
    "sd_rng_type_name": (c_char_p, [c_enum]),
    "str_to_rng_type": (c_enum, [c_char_p]),
    "sd_sample_method_name": (c_char_p, [c_enum]),
    "str_to_sample_method": (c_enum, [c_char_p]),
    "sd_scheduler_name": (c_char_p, [c_enum]),
    "str_to_scheduler": (c_enum, [c_char_p]),
    "sd_prediction_name": (c_char_p, [c_enum]),
    "str_to_prediction": (c_enum, [c_char_p]),
    "sd_preview_name": (c_char_p, [c_enum]),
    "str_to_preview": (c_enum, [c_char_p]),
    "sd_lora_apply_mode_name": (c_char_p, [c_enum]),
    "str_to_lora_apply_mode": (c_enum, [c_char_p]),
    "sd_hires_upscaler_name": (c_char_p, [c_enum]),
    "str_to_sd_hires_upscaler": (c_enum, [c_char_p]),
    "sd_cache_params_init": (None, [POINTER(sd_cache_params_t)]),
    "sd_hires_params_init": (None, [POINTER(sd_hires_params_t)]),
    "sd_ctx_params_init": (None, [POINTER(sd_ctx_params_t)]),
    "sd_ctx_params_to_str": (c_void_p, [POINTER(sd_ctx_params_t)]),
    "new_sd_ctx": (sd_ctx_p, [POINTER(sd_ctx_params_t)]),
    "free_sd_ctx": (None, [sd_ctx_p]),
    "sd_sample_params_init": (None, [POINTER(sd_sample_params_t)]),
    "sd_sample_params_to_str": (c_void_p, [POINTER(sd_sample_params_t)]),
    "sd_get_default_sample_method": (c_enum, [sd_ctx_p]),
    "sd_get_default_scheduler": (c_enum, [sd_ctx_p, c_enum]),
    "sd_img_gen_params_init": (None, [POINTER(sd_img_gen_params_t)]),
    "sd_img_gen_params_to_str": (c_void_p, [POINTER(sd_img_gen_params_t)]),
    "generate_image": (POINTER(sd_image_t), [sd_ctx_p, POINTER(sd_img_gen_params_t)]),
    "sd_vid_gen_params_init": (None, [POINTER(sd_vid_gen_params_t)]),
    "generate_video": (POINTER(sd_image_t), [sd_ctx_p, POINTER(sd_vid_gen_params_t), POINTER(c_int)]),
    "new_upscaler_ctx": (upscaler_ctx_p, [c_char_p, c_bool, c_bool, c_int, c_int]),
    "free_upscaler_ctx": (None, [upscaler_ctx_p]),
    "upscale": (sd_image_t, [upscaler_ctx_p, sd_image_t, c_uint32]),
    "get_upscale_factor": (c_int, [upscaler_ctx_p]),
    "convert": (c_bool, [c_char_p, c_char_p, c_char_p, c_enum, c_char_p, c_bool]),
    "preprocess_canny": (c_bool, [sd_image_t, c_float, c_float, c_float, c_float, c_bool]),
    "sd_commit": (c_char_p, []),
    "sd_version": (c_char_p, []),
}

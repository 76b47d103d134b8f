// src/env/render.cpp: the headless OpenGL platform (EGL, OSMesa) opened at run time, and
// MuJoCo's offscreen rendering of an Env (run book: render.h).
#include "env/render.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "common.h"

namespace pompc::env {

namespace {

// ---- the EGL 1.5 and OpenGL subset used, with the Khronos registry's values ------------------
// (declared here so that building needs no EGL headers; libEGL itself is opened at run time)
using EGLDisplay = void*;
using EGLConfig = void*;
using EGLContext = void*;
using EGLSurface = void*;
using EGLDeviceEXT = void*;
using EGLint = int32_t;
using EGLBoolean = unsigned;
using EGLenum = unsigned;
constexpr EGLint kEglNone = 0x3038, kEglExtensions = 0x3055, kEglRedSize = 0x3024,
                 kEglGreenSize = 0x3023, kEglBlueSize = 0x3022, kEglDepthSize = 0x3025,
                 kEglStencilSize = 0x3026, kEglRenderableType = 0x3040, kEglOpenglBit = 0x0008,
                 kEglSurfaceType = 0x3033, kEglPbufferBit = 0x0001;
constexpr EGLenum kEglOpenglApi = 0x30A2, kEglPlatformDevice = 0x313F,
                  kEglPlatformSurfacelessMesa = 0x31DD;
constexpr unsigned kGlRenderer = 0x1F01, kGlVersion = 0x1F02, kGlExtensions = 0x1F03,
                   kGlRgba = 0x1908, kGlUnsignedByte = 0x1401;

struct Egl {
  void* (*GetProcAddress)(const char*);
  EGLint (*GetError)();
  EGLDisplay (*GetDisplay)(void*);
  EGLBoolean (*Initialize)(EGLDisplay, EGLint*, EGLint*);
  const char* (*QueryString)(EGLDisplay, EGLint);
  EGLBoolean (*ChooseConfig)(EGLDisplay, const EGLint*, EGLConfig*, EGLint, EGLint*);
  EGLBoolean (*BindAPI)(EGLenum);
  EGLContext (*CreateContext)(EGLDisplay, EGLConfig, EGLContext, const EGLint*);
  EGLBoolean (*MakeCurrent)(EGLDisplay, EGLSurface, EGLSurface, EGLContext);
  EGLBoolean (*DestroyContext)(EGLDisplay, EGLContext);
  EGLDisplay (*GetPlatformDisplayEXT)(EGLenum, void*, const EGLint*);
  EGLBoolean (*QueryDevicesEXT)(EGLint, EGLDeviceEXT*, EGLint*);
};

struct OsMesa {
  void* (*CreateContextExt)(unsigned, int, int, int, void*);
  unsigned char (*MakeCurrent)(void*, void*, unsigned, int, int);
  void (*DestroyContext)(void*);
  void* (*GetProcAddress)(const char*);
};

constexpr int kOsMesaSide = 16;  // OSMesa's own buffer: MuJoCo draws into its offscreen FBO

// The process's OpenGL platform (render.h: chosen once, kept until exit).
struct Platform {
  enum Kind { kNone, kEgl, kOsMesa } kind = kNone;
  std::string description;  // what was chosen, or (kind == kNone) why nothing was
  Egl egl{};
  EGLDisplay display = nullptr;
  EGLConfig config = nullptr;
  OsMesa osmesa{};
  const char* (*glGetString)(unsigned) = nullptr;
};

bool has_word(const char* list, const char* word) {
  if (!list) return false;
  const size_t n = std::strlen(word);
  for (const char* p = list; (p = std::strstr(p, word)); p += n)
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return true;
  return false;
}

template <class F>
bool load(void* lib, const char* name, F* f) {
  *f = reinterpret_cast<F>(::dlsym(lib, name));
  return *f != nullptr;
}

// What MuJoCo's renderer needs of the current context; "" when it has it.
std::string check_gl(const Platform& p) {
  const char* version = p.glGetString(kGlVersion);
  if (!version) return "glGetString failed";
  int major = 0, minor = 0;
  std::sscanf(version, "%d.%d", &major, &minor);
  if (major * 10 + minor < 15) return strfmt("OpenGL %s (MuJoCo needs 1.5)", version);
  if (!has_word(p.glGetString(kGlExtensions), "GL_ARB_framebuffer_object"))
    return strfmt("OpenGL %s without GL_ARB_framebuffer_object", version);
  return "";
}

std::string gl_name(const Platform& p) {
  return strfmt("%s, OpenGL %s", p.glGetString(kGlRenderer), p.glGetString(kGlVersion));
}

// One EGL display: initialise it and make (then drop) a test context. Appends why not to *why.
bool try_egl_display(Platform& p, EGLDisplay d, const std::string& name, std::string* why) {
  Egl& e = p.egl;
  EGLint major = 0, minor = 0;
  if (!d || !e.Initialize(d, &major, &minor)) {
    *why += strfmt("; %s: eglInitialize failed (0x%x)", name.c_str(), e.GetError());
    return false;
  }
  if (!has_word(e.QueryString(d, kEglExtensions), "EGL_KHR_surfaceless_context")) {
    *why += strfmt("; %s: no EGL_KHR_surfaceless_context", name.c_str());
    return false;
  }
  // A pbuffer config (the default asks for windows, which a headless display has none of); no
  // surface is made: MuJoCo renders into its own framebuffer object.
  const EGLint attribs[] = {kEglRedSize,
                            8,
                            kEglGreenSize,
                            8,
                            kEglBlueSize,
                            8,
                            kEglDepthSize,
                            24,
                            kEglStencilSize,
                            8,
                            kEglRenderableType,
                            kEglOpenglBit,
                            kEglSurfaceType,
                            kEglPbufferBit,
                            kEglNone};
  EGLConfig config = nullptr;
  EGLint n = 0;
  if (!e.ChooseConfig(d, attribs, &config, 1, &n) || n < 1) {
    *why += strfmt("; %s: no RGB8 depth-24 OpenGL pbuffer config", name.c_str());
    return false;
  }
  if (!e.BindAPI(kEglOpenglApi)) {
    *why += strfmt("; %s: no desktop OpenGL API", name.c_str());
    return false;
  }
  EGLContext ctx = e.CreateContext(d, config, nullptr, nullptr);
  if (!ctx || !e.MakeCurrent(d, nullptr, nullptr, ctx)) {
    *why +=
        strfmt("; %s: cannot make an OpenGL context current (0x%x)", name.c_str(), e.GetError());
    if (ctx) e.DestroyContext(d, ctx);
    return false;
  }
  const std::string gl = check_gl(p);
  const std::string desc = gl.empty() ? name + ", " + gl_name(p) : "";
  e.MakeCurrent(d, nullptr, nullptr, nullptr);
  e.DestroyContext(d, ctx);
  if (!gl.empty()) {
    *why += "; " + name + ": " + gl;
    return false;
  }
  p.display = d;
  p.config = config;
  p.description = desc;
  return true;
}

bool try_egl(Platform& p, std::string* why) {
  void* lib = ::dlopen("libEGL.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    *why += strfmt("; EGL: %s", ::dlerror());
    return false;
  }
  Egl& e = p.egl;
  if (!load(lib, "eglGetProcAddress", &e.GetProcAddress) ||
      !load(lib, "eglGetError", &e.GetError) || !load(lib, "eglGetDisplay", &e.GetDisplay) ||
      !load(lib, "eglInitialize", &e.Initialize) || !load(lib, "eglQueryString", &e.QueryString) ||
      !load(lib, "eglChooseConfig", &e.ChooseConfig) || !load(lib, "eglBindAPI", &e.BindAPI) ||
      !load(lib, "eglCreateContext", &e.CreateContext) ||
      !load(lib, "eglMakeCurrent", &e.MakeCurrent) ||
      !load(lib, "eglDestroyContext", &e.DestroyContext)) {
    *why += "; EGL: libEGL.so.1 lacks EGL 1.4 functions";
    return false;
  }
  p.glGetString = reinterpret_cast<const char* (*)(unsigned)>(e.GetProcAddress("glGetString"));
  e.GetPlatformDisplayEXT = reinterpret_cast<decltype(e.GetPlatformDisplayEXT)>(
      e.GetProcAddress("eglGetPlatformDisplayEXT"));
  e.QueryDevicesEXT =
      reinterpret_cast<decltype(e.QueryDevicesEXT)>(e.GetProcAddress("eglQueryDevicesEXT"));
  if (!p.glGetString) {
    *why += "; EGL: no glGetString";
    return false;
  }
  const char* client = e.QueryString(nullptr, kEglExtensions);  // client extensions
  bool ok = false;
  if (e.GetPlatformDisplayEXT && e.QueryDevicesEXT && has_word(client, "EGL_EXT_platform_device")) {
    EGLDeviceEXT devices[16];
    EGLint n = 0;
    if (e.QueryDevicesEXT(16, devices, &n))
      for (EGLint i = 0; i < n && !ok; ++i)
        ok = try_egl_display(p, e.GetPlatformDisplayEXT(kEglPlatformDevice, devices[i], nullptr),
                             strfmt("EGL device %d of %d", i, n), why);
  }
  if (!ok && e.GetPlatformDisplayEXT && has_word(client, "EGL_MESA_platform_surfaceless"))
    ok = try_egl_display(p, e.GetPlatformDisplayEXT(kEglPlatformSurfacelessMesa, nullptr, nullptr),
                         "EGL surfaceless (Mesa)", why);
  if (!ok) ok = try_egl_display(p, e.GetDisplay(nullptr), "EGL default display", why);
  // MuJoCo's loader looks for eglGetProcAddress among the process's global symbols.
  if (ok) ::dlopen("libEGL.so.1", RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
  return ok;
}

bool try_osmesa(Platform& p, std::string* why) {
  void* lib = ::dlopen("libOSMesa.so.8", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    *why += strfmt("; OSMesa: %s", ::dlerror());
    return false;
  }
  OsMesa& o = p.osmesa;
  if (!load(lib, "OSMesaCreateContextExt", &o.CreateContextExt) ||
      !load(lib, "OSMesaMakeCurrent", &o.MakeCurrent) ||
      !load(lib, "OSMesaDestroyContext", &o.DestroyContext) ||
      !load(lib, "OSMesaGetProcAddress", &o.GetProcAddress)) {
    *why += "; OSMesa: libOSMesa.so.8 lacks OSMesa functions";
    return false;
  }
  p.glGetString = reinterpret_cast<const char* (*)(unsigned)>(o.GetProcAddress("glGetString"));
  void* ctx = o.CreateContextExt(kGlRgba, 24, 8, 0, nullptr);
  std::vector<uint8_t> buffer(kOsMesaSide * kOsMesaSide * 4);
  if (!ctx || !p.glGetString ||
      !o.MakeCurrent(ctx, buffer.data(), kGlUnsignedByte, kOsMesaSide, kOsMesaSide)) {
    *why += "; OSMesa: cannot make a context current";
    if (ctx) o.DestroyContext(ctx);
    return false;
  }
  const std::string gl = check_gl(p);
  if (gl.empty()) p.description = "OSMesa, " + gl_name(p);
  o.MakeCurrent(nullptr, nullptr, 0, 0, 0);  // released first, or its framebuffer leaks
  o.DestroyContext(ctx);
  if (!gl.empty()) {
    *why += "; OSMesa: " + gl;
    return false;
  }
  ::dlopen("libOSMesa.so.8", RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);  // for MuJoCo's loader
  return true;
}

Platform& platform_once() {
  static Platform p;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("MUJOCO_GL");
    const std::string want = env ? env : "";
    std::string why;
    if (want != "" && want != "egl" && want != "osmesa") {
      p.description = strfmt(
          "MUJOCO_GL=%s: pompc renders headless, with MUJOCO_GL=egl, "
          "MUJOCO_GL=osmesa or MUJOCO_GL unset (EGL, then OSMesa)",
          want.c_str());
      return;
    }
    if (want != "osmesa" && try_egl(p, &why)) {
      p.kind = Platform::kEgl;
      return;
    }
    if (want != "egl" && try_osmesa(p, &why)) {
      p.kind = Platform::kOsMesa;
      return;
    }
    p.description = strfmt(
        "no headless OpenGL for rendering videos (%s). Install Mesa's EGL and software "
        "renderer (Debian: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri; `make deps` "
        "does it as root), or OSMesa (libosmesa6); or train without save_video=true",
        why.empty() ? "nothing tried" : why.c_str() + 2);
  });
  return p;
}

Platform& platform_or_throw() {
  Platform& p = platform_once();
  if (p.kind == Platform::kNone) throw Error(p.description);
  return p;
}

}  // namespace

int default_camera(const TaskSpec& spec) {
  return spec.domain == "quadruped" ? 2 : 0;
}

struct Renderer::Impl {
  Platform& p;
  const mjModel* m;
  const int width, height, camera;
  void* ctx = nullptr;              // EGLContext or OSMesa context
  std::vector<uint8_t> osmesa_buf;  // OSMesa's own colour buffer (MuJoCo draws to its FBO)
  mjData* scratch = nullptr;        // the Env's state, copied
  mjvScene scene;
  mjrContext con;
  bool con_made = false;
  mjvOption opt;
  mjvCamera cam;
  mjvPerturb pert;
  std::vector<uint8_t> bottom_up;  // mjr_readPixels' rows

  Impl(Platform& plat, const mjModel* model, int w, int h, int c)
      : p(plat), m(model), width(w), height(h), camera(c) {
    mjv_defaultScene(&scene);
    mjr_defaultContext(&con);
  }
  // Whatever the constructor got to, in reverse.
  ~Impl() {
    if (!ctx) return;
    make_current();
    if (con_made) mjr_freeContext(&con);
    mjv_freeScene(&scene);
    if (scratch) mj_deleteData(scratch);
    if (p.kind == Platform::kEgl) {
      p.egl.MakeCurrent(p.display, nullptr, nullptr, nullptr);
      p.egl.DestroyContext(p.display, ctx);
    } else {
      p.osmesa.MakeCurrent(nullptr, nullptr, 0, 0, 0);
      p.osmesa.DestroyContext(ctx);
    }
  }

  bool make_current() {
    return p.kind == Platform::kEgl ? p.egl.MakeCurrent(p.display, nullptr, nullptr, ctx)
                                    : p.osmesa.MakeCurrent(ctx, osmesa_buf.data(), kGlUnsignedByte,
                                                           kOsMesaSide, kOsMesaSide);
  }
};

Renderer::Renderer(const Env& env, int width, int height, int camera) {
  Platform& p = platform_or_throw();
  const mjModel* m = env.model();
  POMPC_REQUIRE(width >= 1 && width <= 8192 && height >= 1 && height <= 8192,
                "render: frames must be 1..8192 pixels wide and high, not %d x %d", width, height);
  if (camera == -1 && m->ncam > 0) camera = default_camera(env.spec());
  POMPC_REQUIRE(camera >= -1 && camera < m->ncam,
                "render: camera %d: %s has %d cameras (0..%d), or -1 for the task's default",
                camera, env.spec().name.c_str(), int(m->ncam), int(m->ncam) - 1);
  impl_ = std::make_unique<Impl>(p, m, width, height, camera);
  Impl& r = *impl_;
  if (p.kind == Platform::kEgl) {
    r.ctx = p.egl.CreateContext(p.display, p.config, nullptr, nullptr);
  } else {
    r.osmesa_buf.resize(kOsMesaSide * kOsMesaSide * 4);
    r.ctx = p.osmesa.CreateContextExt(kGlRgba, 24, 8, 0, nullptr);
  }
  POMPC_REQUIRE(r.ctx, "render: cannot create an OpenGL context (%s)", p.description.c_str());
  POMPC_REQUIRE(r.make_current(), "render: cannot make the OpenGL context current (%s)",
                p.description.c_str());
  r.scratch = mj_makeData(m);
  POMPC_REQUIRE(r.scratch, "render: mj_makeData failed (out of memory?)");
  mjv_defaultOption(&r.opt);
  mjv_defaultPerturb(&r.pert);
  mjv_defaultCamera(&r.cam);
  if (camera >= 0) {
    r.cam.type = mjCAMERA_FIXED;
    r.cam.fixedcamid = camera;
  } else {
    mjv_defaultFreeCamera(m, &r.cam);
  }
  mjv_makeScene(m, &r.scene, 10000);
  mjModel sized = *m;  // shares every array with *m; only the offscreen size differs
  sized.vis.global.offwidth = std::max(m->vis.global.offwidth, width);
  sized.vis.global.offheight = std::max(m->vis.global.offheight, height);
  mjr_makeContext(&sized, &r.con, mjFONTSCALE_150);
  r.con_made = true;
  mjr_setBuffer(mjFB_OFFSCREEN, &r.con);
  POMPC_REQUIRE(r.con.currentBuffer == mjFB_OFFSCREEN,
                "render: MuJoCo's offscreen framebuffer is not available (%s)",
                p.description.c_str());
  r.bottom_up.resize(size_t(width) * size_t(height) * 3);
}

Renderer::~Renderer() = default;

void Renderer::render(const Env& env, uint8_t* rgb) {
  Impl& r = *impl_;
  POMPC_REQUIRE(env.model() == r.m,
                "render: this Renderer was made for another Env's model (%s); make one per Env",
                env.spec().name.c_str());
  POMPC_REQUIRE(r.make_current(), "render: cannot make the OpenGL context current (%s)",
                r.p.description.c_str());
  mj_copyData(r.scratch, r.m, env.data());
  mjv_updateScene(r.m, r.scratch, &r.opt, &r.pert, &r.cam, mjCAT_ALL, &r.scene);
  const mjrRect rect = {0, 0, r.width, r.height};
  mjr_setBuffer(mjFB_OFFSCREEN, &r.con);
  mjr_render(rect, &r.scene, &r.con);
  mjr_readPixels(r.bottom_up.data(), nullptr, rect, &r.con);
  const size_t row = size_t(r.width) * 3;
  for (int y = 0; y < r.height; ++y)
    std::memcpy(rgb + size_t(y) * row, r.bottom_up.data() + size_t(r.height - 1 - y) * row, row);
}

int Renderer::width() const {
  return impl_->width;
}
int Renderer::height() const {
  return impl_->height;
}
int Renderer::camera() const {
  return impl_->camera;
}

std::string Renderer::platform() {
  return platform_or_throw().description;
}

}  // namespace pompc::env

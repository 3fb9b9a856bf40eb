/*
 * fakecam: a TEST DOUBLE of a V4L2 capture device (a USB webcam), emulated in userspace.
 *
 * The kernel of the machine the tests run on has no media support (no CONFIG_MEDIA_SUPPORT, no modules,
 * no CUSE), so no /dev/video* node can exist there: no real camera, no v4l2loopback, no vivid. This
 * library is loaded with LD_PRELOAD into the process under test and stands in for the kernel driver:
 * opening the path in FAKECAM_DEVICE returns a memfd, and the V4L2 ioctls on that fd are answered here
 * as a single-format, streaming-only capture driver would answer them. Everything else goes to libc.
 * What stays real is the caller's code path: OpenCV's V4L2 backend negotiates the format, requests
 * buffers, mmap()s them from the fd itself (the memfd backs the buffers at the offsets QUERYBUF gives),
 * queues them, starts streaming, waits in select()/poll() and dequeues frames, then converts YUYV to BGR.
 *
 * Written from the V4L2 UAPI (linux/videodev2.h); not derived from any other project.
 *
 * Environment:
 *   FAKECAM_DEVICE            path to emulate, e.g. /dev/video42 (unset: the library does nothing)
 *   FAKECAM_FRAMES            raw YUYV frames of FAKECAM_WIDTH x FAKECAM_HEIGHT, back to back; looped
 *   FAKECAM_WIDTH/HEIGHT      frame size (default 640x480; width even)
 *   FAKECAM_FPS               frame rate of the emulated sensor (default 15)
 *   FAKECAM_DISCONNECT_AFTER  unplug the camera once, after this many frames were dequeued (0: never)
 *   FAKECAM_REPLUG_MS         how long it stays unplugged: open() fails with ENOENT meanwhile (default 0)
 *   FAKECAM_LOG               file to append one line per ioctl, open, close and unplug to
 *
 * The driver model: buffers the application queued (QBUF) are filled in order, one a frame period after
 * STREAMON; a frame that finds no queued buffer is lost, as with a real driver, and its sequence number is
 * skipped. DQBUF hands out filled buffers oldest first; with O_NONBLOCK it fails with EAGAIN when none is
 * filled yet, and select()/poll() on the fd wait until one is (or the device is gone: POLLERR).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_OPEN 8
#define MAX_BUFFERS 8
#define MIN_BUFFERS 2

enum buf_state { BUF_DEQUEUED, BUF_QUEUED, BUF_DONE };

struct fake_buffer {
    enum buf_state state;
    uint32_t sequence;
    struct timeval timestamp;
};

struct handle {
    int fd; /* the memfd handed out for the device node; -1 when the slot is free */
    int streaming;
    int dead; /* open when the camera was unplugged: fails with ENODEV for good */
    uint32_t count;
    struct fake_buffer bufs[MAX_BUFFERS];
    uint32_t incoming[MAX_BUFFERS]; /* FIFO of queued (empty) buffers */
    uint32_t n_incoming;
    uint32_t done[MAX_BUFFERS]; /* FIFO of filled buffers */
    uint32_t n_done;
    double t0;           /* STREAMON time, CLOCK_MONOTONIC seconds */
    uint64_t last_tick;  /* frame periods handled since t0 */
};

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_poll)(struct pollfd *, nfds_t, int);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *device;
static unsigned width = 640, height = 480, fps = 15;
static size_t sizeimage, stride;
static unsigned char *frames;
static size_t n_frames;
static uint64_t disconnect_after, replug_ms, delivered;
static int unplugged;      /* set once the emulated camera has been pulled out */
static double replug_at;   /* monotonic time it is back */
static int log_fd = -1;
static struct handle handles[MAX_OPEN];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void logf_(const char *fmt, ...) {
    if (log_fd < 0)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t ignored = write(log_fd, line, (size_t)n);
    (void)ignored;
}

static unsigned env_uint(const char *name, unsigned fallback) {
    const char *value = getenv(name);
    return value && *value ? (unsigned)strtoul(value, NULL, 10) : fallback;
}

static void load_frames(const char *path) {
    int fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeimage) {
        n_frames = (size_t)st.st_size / sizeimage;
        frames = malloc(n_frames * sizeimage);
        size_t got = 0;
        while (frames && got < n_frames * sizeimage) {
            ssize_t n = read(fd, frames + got, n_frames * sizeimage - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got < n_frames * sizeimage)
            n_frames = got / sizeimage;
        if (!n_frames) {
            free(frames);
            frames = NULL;
        }
    }
    real_close(fd);
}

static void init(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_close = dlsym(RTLD_NEXT, "close");
    real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    real_select = dlsym(RTLD_NEXT, "select");
    real_poll = dlsym(RTLD_NEXT, "poll");
    for (int i = 0; i < MAX_OPEN; i++)
        handles[i].fd = -1;
    device = getenv("FAKECAM_DEVICE");
    if (device && !*device)
        device = NULL;
    width = env_uint("FAKECAM_WIDTH", 640) & ~1u;
    height = env_uint("FAKECAM_HEIGHT", 480);
    fps = env_uint("FAKECAM_FPS", 15);
    if (!fps)
        fps = 15;
    disconnect_after = env_uint("FAKECAM_DISCONNECT_AFTER", 0);
    replug_ms = env_uint("FAKECAM_REPLUG_MS", 0);
    sizeimage = (size_t)width * height * 2;
    long page = sysconf(_SC_PAGESIZE);
    stride = (sizeimage + (size_t)page - 1) / (size_t)page * (size_t)page; /* mmap offsets are page aligned */
    const char *log_path = getenv("FAKECAM_LOG");
    if (device && log_path && *log_path)
        log_fd = real_open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const char *frames_path = getenv("FAKECAM_FRAMES");
    if (device && frames_path)
        load_frames(frames_path);
}

static void ensure_init(void) { pthread_once(&once, init); }

/* caller holds lock */
static struct handle *find(int fd) {
    if (fd < 0)
        return NULL;
    for (int i = 0; i < MAX_OPEN; i++)
        if (handles[i].fd == fd)
            return &handles[i];
    return NULL;
}

static int is_fake(int fd) {
    ensure_init();
    if (!device || fd < 0)
        return 0;
    pthread_mutex_lock(&lock);
    int fake = find(fd) != NULL;
    pthread_mutex_unlock(&lock);
    return fake;
}

static int open_device(int flags) {
    pthread_mutex_lock(&lock);
    if (unplugged && now() < replug_at) {
        pthread_mutex_unlock(&lock);
        logf_("open %s: ENOENT (unplugged)", device);
        errno = ENOENT;
        return -1;
    }
    struct handle *h = NULL;
    for (int i = 0; i < MAX_OPEN && !h; i++)
        if (handles[i].fd < 0)
            h = &handles[i];
    if (!h || !frames) {
        pthread_mutex_unlock(&lock);
        logf_("open %s: %s", device, frames ? "EBUSY" : "EIO (no FAKECAM_FRAMES)");
        errno = h ? EIO : EBUSY;
        return -1;
    }
    int fd = memfd_create("fakecam", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    if (flags & O_NONBLOCK)
        fcntl(fd, F_SETFL, O_NONBLOCK);
    memset(h, 0, sizeof *h);
    h->fd = fd;
    pthread_mutex_unlock(&lock);
    logf_("open %s flags=%#x -> fd %d", device, flags, fd);
    return fd;
}

static int matches(const char *path) {
    ensure_init();
    return device && path && strcmp(path, device) == 0;
}

/* ---- open / close ---------------------------------------------------------------------------------- */

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (matches(path))
        return open_device(flags);
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (matches(path))
        return open_device(flags);
    return real_open(path, flags | O_LARGEFILE, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (matches(path) && (path[0] == '/' || dirfd == AT_FDCWD))
        return open_device(flags);
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (matches(path) && (path[0] == '/' || dirfd == AT_FDCWD))
        return open_device(flags);
    return real_openat(dirfd, path, flags | O_LARGEFILE, mode);
}

/* the _FORTIFY_SOURCE entry points */
int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open64(path, flags); }
int __openat_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
int __openat64_2(int dirfd, const char *path, int flags) { return openat64(dirfd, path, flags); }

int close(int fd) {
    ensure_init();
    if (device && fd >= 0) {
        pthread_mutex_lock(&lock);
        struct handle *h = find(fd);
        if (h)
            h->fd = -1;
        pthread_mutex_unlock(&lock);
        if (h)
            logf_("close fd %d", fd);
    }
    return real_close(fd);
}

/* ---- the driver ------------------------------------------------------------------------------------- */

static void set_str(__u8 *dst, size_t size, const char *src) {
    memset(dst, 0, size);
    snprintf((char *)dst, size, "%s", src);
}

static void fill_pix(struct v4l2_pix_format *pix) {
    memset(pix, 0, sizeof *pix);
    pix->width = width;
    pix->height = height;
    pix->pixelformat = V4L2_PIX_FMT_YUYV;
    pix->field = V4L2_FIELD_NONE;
    pix->bytesperline = width * 2;
    pix->sizeimage = (__u32)sizeimage;
    pix->colorspace = V4L2_COLORSPACE_SRGB;
    pix->ycbcr_enc = V4L2_YCBCR_ENC_601;
    pix->quantization = V4L2_QUANTIZATION_LIM_RANGE;
    pix->xfer_func = V4L2_XFER_FUNC_SRGB;
}

static void fill_buffer(struct handle *h, uint32_t i, struct v4l2_buffer *b) {
    memset(b, 0, sizeof *b);
    b->index = i;
    b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    b->memory = V4L2_MEMORY_MMAP;
    b->field = V4L2_FIELD_NONE;
    b->m.offset = (__u32)(i * stride);
    b->length = (__u32)sizeimage;
    b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC | V4L2_BUF_FLAG_TSTAMP_SRC_SOE;
    if (h->bufs[i].state == BUF_QUEUED)
        b->flags |= V4L2_BUF_FLAG_QUEUED;
    if (h->bufs[i].state == BUF_DONE) {
        b->flags |= V4L2_BUF_FLAG_DONE;
        b->bytesused = (__u32)sizeimage;
    }
}

/* The sensor: every frame period since the last call, fill the oldest queued buffer, or lose the frame. */
static void produce(struct handle *h) {
    if (!h->streaming)
        return;
    uint64_t tick = (uint64_t)((now() - h->t0) * fps);
    while (h->last_tick < tick) {
        h->last_tick++;
        if (!h->n_incoming) {
            h->last_tick = tick; /* no buffer to fill: these frames are lost */
            break;
        }
        uint32_t i = h->incoming[0];
        memmove(h->incoming, h->incoming + 1, --h->n_incoming * sizeof h->incoming[0]);
        uint64_t frame = (h->last_tick - 1) % n_frames;
        if (pwrite(h->fd, frames + frame * sizeimage, sizeimage, (off_t)(i * stride)) != (ssize_t)sizeimage)
            logf_("pwrite into buffer %u failed: %s", i, strerror(errno));
        double t = h->t0 + (double)h->last_tick / fps;
        h->bufs[i].state = BUF_DONE;
        h->bufs[i].sequence = (uint32_t)(h->last_tick - 1);
        h->bufs[i].timestamp.tv_sec = (time_t)t;
        h->bufs[i].timestamp.tv_usec = (suseconds_t)((t - (double)(time_t)t) * 1e6);
        h->done[h->n_done++] = i;
    }
}

static double next_frame_at(struct handle *h) {
    return h->t0 + (double)(h->last_tick + 1) / fps;
}

static void sleep_until(double t) {
    double wait = t - now();
    if (wait <= 0)
        return;
    struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static int fail(int err) {
    errno = err;
    return -1;
}

/* caller holds lock; returns 0 or -1 with errno set, or 1: "no frame yet, wait and try again" */
static int driver_ioctl(struct handle *h, unsigned long request, void *arg) {
    if (h->dead)
        return fail(ENODEV);
    switch (request) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *cap = arg;
        memset(cap, 0, sizeof *cap);
        set_str(cap->driver, sizeof cap->driver, "fakecam");
        set_str(cap->card, sizeof cap->card, "fakecam V4L2 test double");
        set_str(cap->bus_info, sizeof cap->bus_info, "platform:fakecam");
        cap->version = (6u << 16) | (1u << 8);
        cap->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        cap->capabilities = cap->device_caps | V4L2_CAP_DEVICE_CAPS;
        return 0;
    }
    case VIDIOC_ENUMINPUT: {
        struct v4l2_input *in = arg;
        if (in->index != 0)
            return fail(EINVAL);
        memset(in, 0, sizeof *in);
        set_str(in->name, sizeof in->name, "Camera 1");
        in->type = V4L2_INPUT_TYPE_CAMERA;
        return 0;
    }
    case VIDIOC_G_INPUT:
        *(int *)arg = 0;
        return 0;
    case VIDIOC_S_INPUT:
        return *(int *)arg == 0 ? 0 : fail(EINVAL);
    case VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *desc = arg;
        if (desc->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || desc->index != 0)
            return fail(EINVAL);
        uint32_t type = desc->type;
        memset(desc, 0, sizeof *desc);
        desc->type = type;
        set_str(desc->description, sizeof desc->description, "YUYV 4:2:2");
        desc->pixelformat = V4L2_PIX_FMT_YUYV;
        return 0;
    }
    case VIDIOC_ENUM_FRAMESIZES: {
        struct v4l2_frmsizeenum *size = arg;
        if (size->index != 0 || size->pixel_format != V4L2_PIX_FMT_YUYV)
            return fail(EINVAL);
        size->type = V4L2_FRMSIZE_TYPE_DISCRETE;
        size->discrete.width = width;
        size->discrete.height = height;
        return 0;
    }
    case VIDIOC_ENUM_FRAMEINTERVALS: {
        struct v4l2_frmivalenum *ival = arg;
        if (ival->index != 0 || ival->pixel_format != V4L2_PIX_FMT_YUYV || ival->width != width ||
            ival->height != height)
            return fail(EINVAL);
        ival->type = V4L2_FRMIVAL_TYPE_DISCRETE;
        ival->discrete.numerator = 1;
        ival->discrete.denominator = fps;
        return 0;
    }
    case VIDIOC_G_FMT:
    case VIDIOC_S_FMT:
    case VIDIOC_TRY_FMT: {
        struct v4l2_format *fmt = arg;
        if (fmt->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return fail(EINVAL);
        if (request == VIDIOC_S_FMT && h->count)
            return fail(EBUSY); /* buffers allocated: the format is locked */
        fill_pix(&fmt->fmt.pix); /* one format, one size: whatever was asked, this is what it gets */
        return 0;
    }
    case VIDIOC_G_PARM:
    case VIDIOC_S_PARM: {
        struct v4l2_streamparm *parm = arg;
        if (parm->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return fail(EINVAL);
        memset(&parm->parm.capture, 0, sizeof parm->parm.capture);
        parm->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        parm->parm.capture.timeperframe.numerator = 1;
        parm->parm.capture.timeperframe.denominator = fps; /* a fixed-rate sensor */
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *req = arg;
        if (req->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || req->memory != V4L2_MEMORY_MMAP)
            return fail(EINVAL);
        if (h->streaming)
            return fail(EBUSY);
        uint32_t count = req->count;
        if (count && count < MIN_BUFFERS)
            count = MIN_BUFFERS;
        if (count > MAX_BUFFERS)
            count = MAX_BUFFERS;
        if (ftruncate(h->fd, (off_t)(count * stride)) != 0)
            return fail(ENOMEM);
        memset(h->bufs, 0, sizeof h->bufs);
        h->n_incoming = h->n_done = 0;
        h->count = count;
        req->count = count;
        req->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP;
        return 0;
    }
    case VIDIOC_QUERYBUF: {
        struct v4l2_buffer *b = arg;
        if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->index >= h->count)
            return fail(EINVAL);
        fill_buffer(h, b->index, b);
        return 0;
    }
    case VIDIOC_QBUF: {
        struct v4l2_buffer *b = arg;
        if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->memory != V4L2_MEMORY_MMAP || b->index >= h->count ||
            h->bufs[b->index].state != BUF_DEQUEUED)
            return fail(EINVAL);
        produce(h); /* frames due before this buffer was queued do not land in it */
        h->bufs[b->index].state = BUF_QUEUED;
        h->incoming[h->n_incoming++] = b->index;
        fill_buffer(h, b->index, b);
        return 0;
    }
    case VIDIOC_DQBUF: {
        struct v4l2_buffer *b = arg;
        if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->memory != V4L2_MEMORY_MMAP)
            return fail(EINVAL);
        if (!h->streaming)
            return fail(EINVAL);
        if (disconnect_after && !unplugged && delivered >= disconnect_after) {
            unplugged = 1; /* pulled out: every open fd is dead, the node is gone until replugged */
            replug_at = now() + replug_ms / 1000.0;
            for (int k = 0; k < MAX_OPEN; k++)
                if (handles[k].fd >= 0)
                    handles[k].dead = 1;
            logf_("unplugged after %llu frames, back in %llu ms", (unsigned long long)delivered,
                  (unsigned long long)replug_ms);
            return fail(ENODEV);
        }
        produce(h);
        if (!h->n_done) {
            if (!h->n_incoming)
                return fail(EINVAL); /* nothing queued: would wait for ever */
            return 1;
        }
        uint32_t i = h->done[0];
        memmove(h->done, h->done + 1, --h->n_done * sizeof h->done[0]);
        h->bufs[i].state = BUF_DEQUEUED;
        fill_buffer(h, i, b);
        b->bytesused = (__u32)sizeimage;
        b->sequence = h->bufs[i].sequence;
        b->timestamp = h->bufs[i].timestamp;
        delivered++;
        return 0;
    }
    case VIDIOC_STREAMON:
    case VIDIOC_STREAMOFF: {
        if (*(int *)arg != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return fail(EINVAL);
        if (request == VIDIOC_STREAMON) {
            if (!h->count)
                return fail(EINVAL);
            if (!h->streaming) {
                h->streaming = 1;
                h->t0 = now();
                h->last_tick = 0;
            }
            return 0;
        }
        h->streaming = 0; /* every buffer goes back to the application, filled or not */
        for (uint32_t i = 0; i < h->count; i++)
            h->bufs[i].state = BUF_DEQUEUED;
        h->n_incoming = h->n_done = 0;
        return 0;
    }
    case VIDIOC_QUERYCTRL:
    case VIDIOC_QUERY_EXT_CTRL:
    case VIDIOC_G_CTRL:
    case VIDIOC_S_CTRL:
    case VIDIOC_G_EXT_CTRLS:
    case VIDIOC_S_EXT_CTRLS:
    case VIDIOC_TRY_EXT_CTRLS:
    case VIDIOC_QUERYMENU:
        return fail(EINVAL); /* a camera without controls: every control id is unknown */
    default:
        return fail(ENOTTY);
    }
}

static const char *ioctl_name(unsigned long request) {
    switch (request) {
#define NAME(r) \
    case r:     \
        return #r;
        NAME(VIDIOC_QUERYCAP)
        NAME(VIDIOC_ENUMINPUT)
        NAME(VIDIOC_G_INPUT)
        NAME(VIDIOC_S_INPUT)
        NAME(VIDIOC_ENUM_FMT)
        NAME(VIDIOC_ENUM_FRAMESIZES)
        NAME(VIDIOC_ENUM_FRAMEINTERVALS)
        NAME(VIDIOC_G_FMT)
        NAME(VIDIOC_S_FMT)
        NAME(VIDIOC_TRY_FMT)
        NAME(VIDIOC_G_PARM)
        NAME(VIDIOC_S_PARM)
        NAME(VIDIOC_REQBUFS)
        NAME(VIDIOC_QUERYBUF)
        NAME(VIDIOC_QBUF)
        NAME(VIDIOC_DQBUF)
        NAME(VIDIOC_STREAMON)
        NAME(VIDIOC_STREAMOFF)
        NAME(VIDIOC_QUERYCTRL)
        NAME(VIDIOC_QUERY_EXT_CTRL)
        NAME(VIDIOC_G_CTRL)
        NAME(VIDIOC_S_CTRL)
        NAME(VIDIOC_G_EXT_CTRLS)
        NAME(VIDIOC_S_EXT_CTRLS)
        NAME(VIDIOC_CROPCAP)
        NAME(VIDIOC_G_SELECTION)
        NAME(VIDIOC_G_STD)
        NAME(VIDIOC_ENUMSTD)
#undef NAME
    default:
        return NULL;
    }
}

static void log_ioctl(int fd, unsigned long request, void *arg, uint32_t asked, int rc, int err) {
    if (log_fd < 0)
        return;
    const char *name = ioctl_name(request);
    char detail[128] = "";
    if (rc == 0 && (request == VIDIOC_DQBUF || request == VIDIOC_QBUF)) {
        struct v4l2_buffer *b = arg;
        if (request == VIDIOC_DQBUF)
            snprintf(detail, sizeof detail, " index=%u sequence=%u", b->index, b->sequence);
        else
            snprintf(detail, sizeof detail, " index=%u", b->index);
    } else if (rc == 0 && (request == VIDIOC_S_FMT || request == VIDIOC_G_FMT || request == VIDIOC_TRY_FMT)) {
        struct v4l2_format *f = arg;
        int n = 0;
        if (asked)
            n = snprintf(detail, sizeof detail, " asked %.4s:", (const char *)&asked);
        snprintf(detail + n, sizeof detail - (size_t)n, " %ux%u %.4s", f->fmt.pix.width, f->fmt.pix.height,
                 (const char *)&f->fmt.pix.pixelformat);
    } else if (rc == 0 && request == VIDIOC_REQBUFS) {
        snprintf(detail, sizeof detail, " count=%u", ((struct v4l2_requestbuffers *)arg)->count);
    }
    char unknown[32];
    if (!name) {
        snprintf(unknown, sizeof unknown, "ioctl %#lx", request);
        name = unknown;
    }
    if (rc == 0)
        logf_("fd %d %s%s", fd, name, detail);
    else
        logf_("fd %d %s -> %s", fd, name, strerrorname_np(err) ? strerrorname_np(err) : "?");
}

int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!is_fake(fd))
        return real_ioctl(fd, request, arg);
    uint32_t asked = 0; /* the pixel format the caller asked for, for the log */
    if (request == VIDIOC_S_FMT || request == VIDIOC_TRY_FMT)
        asked = ((struct v4l2_format *)arg)->fmt.pix.pixelformat;
    for (;;) {
        pthread_mutex_lock(&lock);
        struct handle *h = find(fd);
        if (!h) { /* closed meanwhile */
            pthread_mutex_unlock(&lock);
            return real_ioctl(fd, request, arg);
        }
        int rc = driver_ioctl(h, request, arg);
        int err = errno;
        double due = rc == 1 ? next_frame_at(h) : 0;
        pthread_mutex_unlock(&lock);
        if (rc == 1) { /* DQBUF with no frame yet */
            if (fcntl(fd, F_GETFL) & O_NONBLOCK) {
                log_ioctl(fd, request, arg, 0, -1, EAGAIN);
                errno = EAGAIN;
                return -1;
            }
            sleep_until(due);
            continue;
        }
        log_ioctl(fd, request, arg, asked, rc, err);
        errno = err;
        return rc;
    }
}

/* ---- select / poll: the fd is readable when a filled buffer waits, or the device is gone ------------ */

/* 1: a frame (or an error) is ready; 0: not yet, *due says when the next frame comes; -1: not ours */
static int readiness(int fd, double *due) {
    pthread_mutex_lock(&lock);
    struct handle *h = find(fd);
    int ready = -1;
    if (h) {
        produce(h);
        ready = (h->dead || !h->streaming || h->n_done) ? 1 : 0;
        if (!ready && !h->n_incoming)
            ready = 1; /* nothing queued: a real driver reports POLLERR rather than block */
        if (!ready && disconnect_after && !unplugged && delivered >= disconnect_after)
            ready = 1;
        *due = h->streaming ? next_frame_at(h) : 0;
    }
    pthread_mutex_unlock(&lock);
    return ready;
}

int select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds, struct timeval *timeout) {
    ensure_init();
    int fake[FD_SETSIZE / 64], n_fake = 0;
    if (device && readfds) {
        for (int fd = 0; fd < nfds && fd < FD_SETSIZE && n_fake < (int)(sizeof fake / sizeof *fake); fd++)
            if (FD_ISSET(fd, readfds) && is_fake(fd))
                fake[n_fake++] = fd;
    }
    if (!n_fake)
        return real_select(nfds, readfds, writefds, exceptfds, timeout);
    double deadline = timeout ? now() + timeout->tv_sec + timeout->tv_usec / 1e6 : 1e300;
    fd_set r0, w0, e0;
    FD_ZERO(&r0);
    FD_ZERO(&w0);
    FD_ZERO(&e0);
    if (readfds)
        r0 = *readfds;
    if (writefds)
        w0 = *writefds;
    if (exceptfds)
        e0 = *exceptfds;
    for (int k = 0; k < n_fake; k++) {
        FD_CLR(fake[k], &r0);
        FD_CLR(fake[k], &w0);
        FD_CLR(fake[k], &e0);
    }
    int others = 0;
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
        others |= FD_ISSET(fd, &r0) || FD_ISSET(fd, &w0) || FD_ISSET(fd, &e0);
    for (;;) {
        int ready[FD_SETSIZE / 64], n_ready = 0;
        double next = deadline;
        for (int k = 0; k < n_fake; k++) {
            double due = 0;
            if (readiness(fake[k], &due) == 1)
                ready[n_ready++] = fake[k];
            else if (due && due < next)
                next = due;
        }
        double t = now();
        int final = n_ready || t >= deadline;
        double wait = final ? 0 : next - t;
        if (wait < 0)
            wait = 0;
        fd_set r = r0, w = w0, e = e0;
        int rc = 0;
        if (others) {
            struct timeval tv = {(time_t)wait, (suseconds_t)((wait - (double)(time_t)wait) * 1e6)};
            rc = real_select(nfds, &r, &w, &e, &tv);
            if (rc < 0)
                return rc;
        } else if (!final) {
            sleep_until(t + wait);
        }
        if (n_ready || rc > 0 || final) {
            logf_("select on fd %d -> %s", fake[0], n_ready ? "readable" : rc > 0 ? "other fd" : "timeout");
            for (int k = 0; k < n_ready; k++)
                FD_SET(ready[k], &r);
            if (readfds)
                *readfds = r;
            if (writefds)
                *writefds = w;
            if (exceptfds)
                *exceptfds = e;
            return rc + n_ready;
        }
    }
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout_ms) {
    ensure_init();
    int any = 0;
    for (nfds_t i = 0; device && i < nfds && !any; i++)
        any = is_fake(fds[i].fd);
    if (!any)
        return real_poll(fds, nfds, timeout_ms);
    double deadline = timeout_ms < 0 ? 1e300 : now() + timeout_ms / 1000.0;
    for (;;) {
        int n_ready = 0;
        double next = deadline;
        for (nfds_t i = 0; i < nfds; i++) {
            double due = 0;
            int ready = readiness(fds[i].fd, &due);
            if (ready < 0)
                continue;
            fds[i].revents = 0;
            if (ready) {
                int err = 0;
                pthread_mutex_lock(&lock);
                struct handle *h = find(fds[i].fd);
                err = h && (h->dead || !h->streaming || (!h->n_done && !h->n_incoming));
                pthread_mutex_unlock(&lock);
                fds[i].revents = err ? POLLERR : (short)(fds[i].events & (POLLIN | POLLRDNORM));
                n_ready += fds[i].revents != 0;
            } else if (due && due < next) {
                next = due;
            }
        }
        /* the other fds, without waiting when a fake one is ready */
        double t = now();
        int final = n_ready || t >= deadline;
        int wait_ms = final ? 0 : (int)((next - t) * 1000.0 + 0.999);
        struct pollfd others[64];
        nfds_t map[64], n_others = 0;
        for (nfds_t i = 0; i < nfds && n_others < 64; i++)
            if (!is_fake(fds[i].fd)) {
                others[n_others] = fds[i];
                map[n_others++] = i;
            }
        int rc = 0;
        if (n_others) {
            rc = real_poll(others, n_others, wait_ms);
            if (rc < 0)
                return rc;
            for (nfds_t k = 0; k < n_others; k++)
                fds[map[k]].revents = others[k].revents;
        } else if (!final) {
            sleep_until(t + wait_ms / 1000.0);
        }
        if (n_ready || rc > 0 || final) {
            logf_("poll -> %d fake fd(s) ready", n_ready);
            return n_ready + rc;
        }
    }
}

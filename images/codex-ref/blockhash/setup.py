from setuptools import Extension, setup

# Linked to the versioned libcrypto the runtime already has (Python's hashlib uses it), so
# building needs no OpenSSL development package.
setup(ext_modules=[Extension("blockhash", ["blockhash.c"], extra_link_args=["-l:libcrypto.so.3"])])

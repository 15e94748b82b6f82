-- imagekit.url(): delivery URLs as the official SDKs build them.  The
-- signatures of the SDKs' own vectors (private key "dummy-key") are checked
-- by test/t/015_url.pl; here the key is the test cluster's.
\set VERBOSITY sqlstate
-- a path, with the configured endpoint (https://ik.imagekit.io/demo)
SELECT imagekit.url('sdk-testing-files/future-search.png');
SELECT imagekit.url('/coffee-images/a.png', 'w-300,h-200');
SELECT imagekit.url('/coffee-images/a.png', 'w-300,h-200:rt-90', transformation_position => 'path');
-- spaces, unicode, "?" and "#" in a path are encoded as the SDK's URL parser does
SELECT imagekit.url('my folder/हिन्दी #1?.png', url_endpoint => 'https://ik.imagekit.io/demo/');
-- dot segments are resolved, runs of "/" are one
SELECT imagekit.url('//a/./b/../c.jpg', url_endpoint => 'https://ik.imagekit.io/demo//');
-- an absolute URL (a stored imagekit_url): the transformation goes in its query
SELECT imagekit.url('https://ik.imagekit.io/demo/x.jpg?v=1', 'w-100', transformation_position => 'path');
SELECT imagekit.url('HTTPS://Other.Example:443/a b.jpg');
-- signed: a 40-digit signature; expiring: ik-t is the transaction's time + expires_in
SELECT imagekit.url('x.jpg', signed => true) ~ '^https://ik\.imagekit\.io/demo/x\.jpg\?ik-s=[0-9a-f]{40}$' AS signed;
SELECT substring(imagekit.url('x.jpg', 'w-100', expires_in => 300) FROM 'ik-t=([0-9]+)&ik-s=[0-9a-f]{40}$')::bigint
       = extract(epoch FROM date_trunc('second', now()))::bigint + 300 AS expiring;
SELECT imagekit.url(NULL) IS NULL AS null_src;
-- bad input
SELECT imagekit.url('');
SELECT imagekit.url('x.jpg', 'w-300,,h-200');
SELECT imagekit.url('x.jpg', 'w-300/h-200');
SELECT imagekit.url('x.jpg', 'w-300:');
SELECT imagekit.url('x.jpg', transformation_position => 'PATH');
SELECT imagekit.url('x.jpg', expires_in => -1);
SELECT imagekit.url('x.jpg', url_endpoint => 'http://ik.imagekit.io/demo');
SELECT imagekit.url('x.jpg', url_endpoint => '');
SELECT imagekit.url('https://user@example.com/x.jpg');
\set VERBOSITY default
